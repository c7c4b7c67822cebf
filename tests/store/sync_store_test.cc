#include "kvstore/store/sync_store.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/task.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "kvstore/workqueue/rate_limiter.h"
#include "prometheus/registry.h"
#include "store/async_stores.h"
#include "tests/support/fake_sync_store_backend.h"
#include "tests/support/metrics_reader.h"
#include "tests/support/recording_rate_limiter.h"

namespace kvstore::store {
namespace {

using ::kvstore::testing::FakeSyncStoreBackend;
using ::kvstore::testing::ReadMetric;
using ::kvstore::testing::RecordingRateLimiter;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Call = FakeSyncStoreBackend::Call;
using internal::AsyncSyncStore;

Call Update(std::string key, std::string value, bool lease = true) {
  return FakeSyncStoreBackend::UpdateCall(std::move(key), std::move(value), lease);
}
Call Delete(std::string key) { return FakeSyncStoreBackend::DeleteCall(std::move(key)); }

// Retries after 1 ms, 2 ms, ... up to 10 ms.
std::shared_ptr<workqueue::RateLimiter<std::string>> FastRateLimiter() {
  return std::make_shared<workqueue::ItemExponentialFailureRateLimiter<std::string>>(
      std::chrono::milliseconds(1), std::chrono::milliseconds(10));
}

WorkqueueSyncStoreOptions Opts(const std::function<void(WorkqueueSyncStoreOptions&)>& set) {
  WorkqueueSyncStoreOptions opts;
  set(opts);
  return opts;
}

bool IsRfc3339(const std::string& value) {
  static const std::regex kRfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d))");
  return std::regex_match(value, kRfc3339);
}

class FailingKey final : public Key {
 public:
  std::string GetKeyName() const override { return "broken"; }
  absl::StatusOr<std::string> Marshal() const override {
    return absl::InvalidArgumentError("cannot marshal");
  }
  absl::Status Unmarshal(std::string_view, std::string_view) override { return absl::OkStatus(); }
};

// Records the order in which synced callbacks ran.
class CallbackLog {
 public:
  std::function<void(const Context&)> Callback(std::string name) {
    return [this, name](const Context&) {
      std::lock_guard<std::mutex> lock(mu_);
      names_.push_back(name);
    };
  }
  std::vector<std::string> Names() const {
    std::lock_guard<std::mutex> lock(mu_);
    return names_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> names_;
};

// The store runs on the test's thread: its coroutines (the workers) on `executor_`, its backend
// writes on `writes_`, its retry delays on `clock_`. A write the workers handed over and that
// has not run yet is in flight (what a blocked backend call was, except that it reads the key's
// value when it runs); Settle runs everything. BlockingSyncStoreTest below runs SPEC's blocking
// Run on a thread, with real time, and a backend call blocked in the middle.
class SyncStoreTest : public ::testing::Test {
 protected:
  void TearDown() override { Stop(); }

  // The fixture owns the store, so that TearDown stops Run before the store goes away.
  AsyncSyncStore* NewStore(std::string prefix, WorkqueueSyncStoreOptions opts = {}) {
    if (!opts.rate_limiter) opts.rate_limiter = FastRateLimiter();
    if (!opts.clock) opts.clock = clock_;
    store_ = internal::NewAsyncWorkqueueSyncStore("qux", backend_, std::move(prefix),
                                                  std::move(opts), &writes_);
    return store_.get();
  }

  // Starts RunAsync on the executor and runs the store's coroutines (not the writes) until they
  // wait.
  void Start(AsyncSyncStore& store) {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    running_ = true;
    kvstore::internal::Spawn(executor_, store.RunAsync(executor_, ctx_),
                             [returned = returned_] { *returned = true; });
    executor_.RunUntilIdle();
  }

  // Cancels the run and settles: RunAsync has returned.
  void Stop() {
    if (!running_) return;
    running_ = false;
    cancel_();
    Settle();
    EXPECT_TRUE(*returned_);
  }

  // Runs the store's coroutines and its writes until neither has anything queued. Time does not
  // move: retries wait.
  void Settle() {
    while (executor_.RunUntilIdle() + writes_.RunUntilIdle() > 0) {
    }
  }
  // Moves the clock to the next timer (a retry's delay), then settles. False when none is due.
  bool FireNextTimer() {
    if (clock_->NumTimers() == 0) return false;
    clock_->Advance(std::max(clock_->NextTimer() - clock_->Now(), Clock::duration::zero()));
    Settle();
    return true;
  }
  // Settles, then fires timers until none is left (every retry done).
  void SettleWithRetries() {
    Settle();
    for (int i = 0; i < 1000 && FireNextTimer(); ++i) {
    }
    EXPECT_EQ(clock_->NumTimers(), 0u);
  }

  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  ManualExecutor executor_;
  ManualExecutor writes_;
  std::shared_ptr<FakeSyncStoreBackend> backend_ = std::make_shared<FakeSyncStoreBackend>();
  std::unique_ptr<AsyncSyncStore> store_;
  Context ctx_ = Context::Background();
  CancelFunc cancel_;
  bool running_ = false;
  std::shared_ptr<bool> returned_ = std::make_shared<bool>(false);
};

TEST_F(SyncStoreTest, WritesKeysInOrderWithLease) {
  AsyncSyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  EXPECT_EQ(backend_->NumCalls(), 0u);  // nothing ran yet
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("/foo/bar/key1", "value1"), Update("/foo/bar/key2", "value2")));
}

TEST_F(SyncStoreTest, SkipsUnchangedValue) {
  AsyncSyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 1u);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key3", "value3")).ok());
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("/foo/bar/key1", "value1"), Update("/foo/bar/key3", "value3")));
}

TEST_F(SyncStoreTest, CoalescesChangesWhileWorkerIsBusy) {
  AsyncSyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key4", "value4")).ok());
  executor_.RunUntilIdle();
  ASSERT_EQ(writes_.Pending(), 1u);  // key4's write is in flight
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueA")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueB")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueC")).ok());
  executor_.RunUntilIdle();
  EXPECT_EQ(writes_.Pending(), 1u);  // the one worker is busy
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("/foo/bar/key4", "value4"), Update("/foo/bar/key1", "valueC")));
}

TEST_F(SyncStoreTest, DeletesKnownKeysAndIgnoresUnknownOnes) {
  AsyncSyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key4", "value4")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 1u);
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key5", "")).ok());
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key4", "")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 2u);
  // Deleting it again is a no-op too, as the store knows it is gone.
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key4", "")).ok());
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("/foo/bar/key4", "value4"), Delete("/foo/bar/key4")));
}

TEST_F(SyncStoreTest, UpsertThenDeleteBeforeAnyWriteGivesOneDelete) {
  AsyncSyncStore* store = NewStore("/foo/bar");
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key1", "")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key9", "sentinel")).ok());
  Start(*store);
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Delete("/foo/bar/key1"), Update("/foo/bar/key9", "sentinel")));
}

TEST_F(SyncStoreTest, MarshalErrorIsReturned) {
  AsyncSyncStore* store = NewStore("/foo/bar");
  absl::Status status = store->UpsertKey(ctx_, FailingKey());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("broken"));
}

TEST_F(SyncStoreTest, SyncedKeyPathIsAReservedName) {
  AsyncSyncStore* store = NewStore("foo/bar");
  absl::Status status = store->UpsertKey(ctx_, KVPair("cilium/synced/qux/foo/bar", "x"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SyncStoreTest, SecondRunThrows) {
  AsyncSyncStore* store = NewStore("foo/bar");
  auto [ctx, cancel] = WithCancel(Context::Background());
  cancel();
  store->Run(ctx);  // the blocking call, on this thread
  EXPECT_THROW(store->Run(ctx), std::logic_error);
  EXPECT_THROW((void)store->RunAsync(executor_, ctx), std::logic_error);
}

TEST_F(SyncStoreTest, RetriesFailedUpdateAfterTheRateLimitersDelay) {
  AsyncSyncStore* store = NewStore("/foo/bar");
  backend_->FailNext("/foo/bar/key1", 1);
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueC")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 1u);
  // The retry waits for the rate limiter's first delay (1 ms), and no longer.
  ASSERT_EQ(clock_->NumTimers(), 1u);
  EXPECT_EQ(clock_->NextTimer() - clock_->Now(), std::chrono::milliseconds(1));
  clock_->Advance(std::chrono::microseconds(999));
  Settle();
  EXPECT_EQ(backend_->NumCalls(), 1u);
  clock_->Advance(std::chrono::microseconds(1));
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("/foo/bar/key1", "valueC"), Update("/foo/bar/key1", "valueC")));
  EXPECT_EQ(clock_->NumTimers(), 0u);
}

TEST_F(SyncStoreTest, RetriesFailedDelete) {
  AsyncSyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 1u);
  backend_->FailNext("/foo/bar/key2", 1);
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key2", "")).ok());
  SettleWithRetries();
  EXPECT_THAT(backend_->Calls(), ElementsAre(Update("/foo/bar/key2", "value2"),
                                             Delete("/foo/bar/key2"), Delete("/foo/bar/key2")));
}

TEST_F(SyncStoreTest, WritesWithoutLeaseWhenAsked) {
  AsyncSyncStore* store = NewStore("/foo/bar", Opts([&](auto& o) { o.with_lease = false; }));
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  Settle();
  EXPECT_THAT(backend_->Calls(), ElementsAre(Update("/foo/bar/key1", "value1", /*lease=*/false)));
}

TEST_F(SyncStoreTest, CustomRateLimiterSeesWhenThenForget) {
  auto limiter = std::make_shared<RecordingRateLimiter>();
  AsyncSyncStore* store = NewStore("/foo/bar", Opts([&](auto& o) { o.rate_limiter = limiter; }));
  backend_->FailNext("/foo/bar/key1", 1);
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  SettleWithRetries();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("/foo/bar/key1", "value1"), Update("/foo/bar/key1", "value1")));
  EXPECT_THAT(limiter->Calls(), ElementsAre(RecordingRateLimiter::WhenCall("key1"),
                                            RecordingRateLimiter::ForgetCall("key1")));
}

TEST_F(SyncStoreTest, SecondWorkerWritesWhileDeleteIsInFlight) {
  AsyncSyncStore* store = NewStore("/foo/bar", Opts([&](auto& o) { o.workers = 2; }));
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 1u);
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key1", "")).ok());
  executor_.RunUntilIdle();
  ASSERT_EQ(writes_.Pending(), 1u);  // the delete is in flight
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  executor_.RunUntilIdle();
  EXPECT_EQ(writes_.Pending(), 2u);  // the second worker took key2 meanwhile
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("/foo/bar/key1", "value1"), Delete("/foo/bar/key1"),
                          Update("/foo/bar/key2", "value2")));
}

TEST_F(SyncStoreTest, NeverWritesOneKeyTwiceAtOnce) {
  AsyncSyncStore* store = NewStore("/foo/bar", Opts([&](auto& o) { o.workers = 4; }));
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  executor_.RunUntilIdle();
  ASSERT_EQ(writes_.Pending(), 1u);  // key1's first write is in flight
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value2")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  executor_.RunUntilIdle();
  // key2 passed, but key1's second value waits for the first write to finish, with idle workers.
  EXPECT_EQ(writes_.Pending(), 2u);
  // key1's first write reads the key's latest value when it runs; as the key changed after the
  // worker took it, it is written again once that write returned.
  ASSERT_TRUE(writes_.RunOne());
  EXPECT_THAT(backend_->Calls(), ElementsAre(Update("/foo/bar/key1", "value2")));
  executor_.RunUntilIdle();
  EXPECT_EQ(writes_.Pending(), 2u);  // key2's write, and key1's second one
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("/foo/bar/key1", "value2"), Update("/foo/bar/key2", "value2"),
                          Update("/foo/bar/key1", "value2")));
}

TEST_F(SyncStoreTest, SyncedKeyAfterEarlierKeysThenCallbacksInOrder) {
  AsyncSyncStore* store = NewStore("foo/bar");
  Start(*store);
  auto callback = [this](std::string name) {
    return [this, name](const Context& ctx) { (void)backend_->Update(ctx, name, "", true); };
  };
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  ASSERT_TRUE(store->Synced(ctx_, {callback("callback/1"), callback("callback/2")}).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key3", "value3")).ok());
  Settle();
  std::vector<Call> calls = backend_->Calls();
  ASSERT_EQ(calls.size(), 6u);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1], Update("foo/bar/key2", "value2"));
  EXPECT_EQ(calls[2].key, "cilium/synced/qux/foo/bar");
  EXPECT_TRUE(calls[2].lease);
  EXPECT_TRUE(IsRfc3339(calls[2].value)) << calls[2].value;
  EXPECT_EQ(calls[2].value, "2026-01-01T00:00:00Z");  // the FakeClock's wall time
  EXPECT_EQ(calls[3], Update("callback/1", ""));
  EXPECT_EQ(calls[4], Update("callback/2", ""));
  EXPECT_EQ(calls[5], Update("foo/bar/key3", "value3"));
}

TEST_F(SyncStoreTest, SyncedKeyOverride) {
  AsyncSyncStore* store =
      NewStore("foo/bar", Opts([&](auto& o) { o.synced_key_override = "override"; }));
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->Synced(ctx_).ok());
  Settle();
  std::vector<Call> calls = backend_->Calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1].key, "cilium/synced/qux/override");
}

TEST_F(SyncStoreTest, SyncedKeyWaitsForKeyThatFailedFirst) {
  AsyncSyncStore* store = NewStore("foo/bar");
  backend_->FailNext("foo/bar/key1", 1);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  ASSERT_TRUE(store->Synced(ctx_).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key3", "value3")).ok());
  Start(*store);
  Settle();
  // key1 failed and waits for its retry: the synced key is not written meanwhile.
  for (const Call& call : backend_->Calls()) EXPECT_NE(call.key, "cilium/synced/qux/foo/bar");
  SettleWithRetries();
  std::vector<Call> calls = backend_->Calls();
  ASSERT_EQ(calls.size(), 5u);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1], Update("foo/bar/key2", "value2"));
  // The retry of key1 and key3 may come in either order; the synced key comes after both key1
  // writes.
  EXPECT_THAT(
      std::vector<Call>(calls.begin() + 2, calls.begin() + 4),
      UnorderedElementsAre(Update("foo/bar/key1", "value1"), Update("foo/bar/key3", "value3")));
  EXPECT_EQ(calls[4].key, "cilium/synced/qux/foo/bar");
}

// A synced callback that throws runs on a worker of the store: the exception is caught there, the
// next callback still runs and the store goes on writing keys. (Before, the blocking pool's
// thread caught it and the worker stayed suspended for good: no key was written after it, and
// Run never returned, not even once its context was done.)
TEST_F(SyncStoreTest, SyncedCallbackThatThrowsStopsNeitherTheOthersNorTheStore) {
  AsyncSyncStore* store = NewStore("foo/bar");
  CallbackLog log;
  Start(*store);
  ASSERT_TRUE(store
                  ->Synced(ctx_, {[](const Context&) { throw std::runtime_error("refused"); },
                                  log.Callback("after")})
                  .ok());
  Settle();
  EXPECT_THAT(log.Names(), ElementsAre("after"));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  Settle();
  std::vector<Call> calls = backend_->Calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].key, "cilium/synced/qux/foo/bar");
  EXPECT_EQ(calls[1], Update("foo/bar/key1", "value1"));
  Stop();  // RunAsync returns once its context is done
}

TEST_F(SyncStoreTest, RetriesFailedSyncedKeyWrite) {
  AsyncSyncStore* store = NewStore("foo/bar");
  CallbackLog log;
  backend_->FailNext("cilium/synced/qux/foo/bar", 1);
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->Synced(ctx_, {log.Callback("done")}).ok());
  Settle();
  EXPECT_THAT(log.Names(), IsEmpty());  // not before the synced key was written
  SettleWithRetries();
  std::vector<Call> calls = backend_->Calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1].key, "cilium/synced/qux/foo/bar");
  EXPECT_EQ(calls[2].key, "cilium/synced/qux/foo/bar");
  EXPECT_THAT(log.Names(), ElementsAre("done"));
}

TEST_F(SyncStoreTest, SyncedKeyWithTenWorkersWaitsForKeyFailingTwice) {
  AsyncSyncStore* store = NewStore("foo/bar", Opts([&](auto& o) { o.workers = 10; }));
  backend_->FailNext("foo/bar/key1", 2);
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->Synced(ctx_).ok());
  SettleWithRetries();
  std::vector<Call> calls = backend_->Calls();
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[2], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[3].key, "cilium/synced/qux/foo/bar");
}

TEST_F(SyncStoreTest, CallbacksRunOnceInOrderAndOnlyFirstSyncedCounts) {
  AsyncSyncStore* store = NewStore("foo/bar");
  CallbackLog log;
  Start(*store);
  ASSERT_TRUE(store->Synced(ctx_, {log.Callback("a"), log.Callback("b"), log.Callback("c")}).ok());
  ASSERT_TRUE(store->Synced(ctx_, {log.Callback("second")}).ok());
  Settle();
  std::vector<Call> calls = backend_->Calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].key, "cilium/synced/qux/foo/bar");
  EXPECT_THAT(log.Names(), ElementsAre("a", "b", "c"));
}

TEST_F(SyncStoreTest, RegistersLeaseObserversWhileRunning) {
  AsyncSyncStore* store = NewStore("foo/bar");
  EXPECT_THAT(backend_->ObserverPrefixes(), IsEmpty());
  Start(*store);
  EXPECT_THAT(backend_->ObserverPrefixes(), ElementsAre("cilium/synced/qux/foo/bar", "foo/bar"));
  Stop();
  EXPECT_THAT(backend_->ObserverPrefixes(), IsEmpty());
}

TEST_F(SyncStoreTest, RewritesKeyWithExpiredLeaseWithItsLastValue) {
  AsyncSyncStore* store = NewStore("foo/bar");
  Start(*store);
  ASSERT_EQ(backend_->ObserverPrefixes().size(), 2u);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 2u);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1B")).ok());
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key2", "")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 4u);
  backend_->ExpireLease("foo/bar/key1");
  backend_->ExpireLease("foo/bar/key2");     // deleted: not re-created
  backend_->ExpireLease("foo/bar/unknown");  // never upserted
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("foo/bar/key1", "value1"), Update("foo/bar/key2", "value2"),
                          Update("foo/bar/key1", "value1B"), Delete("foo/bar/key2"),
                          Update("foo/bar/key1", "value1B")));
}

// Expired keys are mapped back to names by the inverse of the key layout: a key of a sibling
// prefix ("foo/barkey1" for "foo/bar") is not key1 of this store.
TEST_F(SyncStoreTest, ExpiredLeaseOfASiblingPrefixIsIgnored) {
  AsyncSyncStore* store = NewStore("foo/bar");
  Start(*store);
  ASSERT_EQ(backend_->ObserverPrefixes().size(), 2u);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 1u);
  backend_->ExpireLease("foo/barkey1");
  Settle();
  EXPECT_EQ(backend_->NumCalls(), 1u);
  backend_->ExpireLease("foo/bar//key1");  // doubled slashes still name key1
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ElementsAre(Update("foo/bar/key1", "value1"), Update("foo/bar/key1", "value1")));
}

TEST_F(SyncStoreTest, RewritesExpiredSyncedKeyWithoutCallbacks) {
  AsyncSyncStore* store = NewStore("foo/bar");
  CallbackLog log;
  Start(*store);
  ASSERT_EQ(backend_->ObserverPrefixes().size(), 2u);
  ASSERT_TRUE(store->Synced(ctx_, {log.Callback("once")}).ok());
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 1u);
  ASSERT_THAT(log.Names(), ElementsAre("once"));
  backend_->ExpireLease("cilium/synced/qux/foo/bar");
  Settle();
  std::vector<Call> calls = backend_->Calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].key, "cilium/synced/qux/foo/bar");
  EXPECT_EQ(calls[1].key, "cilium/synced/qux/foo/bar");
  EXPECT_THAT(log.Names(), ElementsAre("once"));
}

// SPEC's blocking Run, on a thread of its own, with the library's blocking pool and real time.
class BlockingSyncStoreTest : public ::testing::Test {
 protected:
  // Run returns before the store goes away.
  void TearDown() override {
    if (runner_.joinable()) {
      cancel_();
      runner_.join();
    }
    store_.reset();
  }
  void Start() {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    runner_ = std::thread([this] { store_->Run(ctx_); });
  }
  std::vector<Call> CallsAfter(size_t n) {
    EXPECT_TRUE(backend_->WaitForCalls(n)) << "only " << backend_->NumCalls() << " calls";
    return backend_->Calls();
  }

  std::shared_ptr<FakeSyncStoreBackend> backend_ = std::make_shared<FakeSyncStoreBackend>();
  std::unique_ptr<SyncStore> store_;
  Context ctx_ = Context::Background();
  CancelFunc cancel_;
  std::thread runner_;
};

TEST_F(BlockingSyncStoreTest, RunWritesKeysInOrderWithLeaseAndRetries) {
  store_ = NewWorkqueueSyncStore("qux", backend_, "/foo/bar",
                                 Opts([&](auto& o) { o.rate_limiter = FastRateLimiter(); }));
  backend_->FailNext("/foo/bar/key2", 1);
  Start();
  ASSERT_TRUE(store_->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store_->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  EXPECT_THAT(CallsAfter(3),
              ElementsAre(Update("/foo/bar/key1", "value1"), Update("/foo/bar/key2", "value2"),
                          Update("/foo/bar/key2", "value2")));
}

TEST_F(BlockingSyncStoreTest, CoalescesChangesWhileTheWriteBlocks) {
  store_ = NewWorkqueueSyncStore("qux", backend_, "/foo/bar");
  backend_->Block("/foo/bar/key4");
  Start();
  ASSERT_TRUE(store_->UpsertKey(ctx_, KVPair("key4", "value4")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(1));  // recorded, then blocked
  ASSERT_TRUE(store_->UpsertKey(ctx_, KVPair("key1", "valueA")).ok());
  ASSERT_TRUE(store_->UpsertKey(ctx_, KVPair("key1", "valueC")).ok());
  backend_->Release("/foo/bar/key4");
  EXPECT_THAT(CallsAfter(2),
              ElementsAre(Update("/foo/bar/key4", "value4"), Update("/foo/bar/key1", "valueC")));
}

class SyncStoreMetricsTest : public SyncStoreTest {
 protected:
  // The store's series live in registry_, which goes before the base class's members.
  void TearDown() override {
    Stop();
    store_.reset();
  }

  std::optional<double> QueueSize() {
    return ReadMetric(registry_, "cilium_kvstore_sync_queue_size",
                      {{"scope", "nodes/v1"}, {"source_cluster", "foo"}});
  }
  std::optional<double> Errors() {
    return ReadMetric(registry_, "cilium_kvstore_sync_errors_total",
                      {{"scope", "nodes/v1"}, {"source_cluster", "foo"}});
  }
  std::optional<double> SyncCompleted() {
    return ReadMetric(registry_, "cilium_kvstore_initial_sync_completed",
                      {{"scope", "nodes/v1"}, {"source_cluster", "foo"}, {"action", "write"}});
  }

  prometheus::Registry registry_;
  std::shared_ptr<Metrics> metrics_ = std::make_shared<Metrics>(registry_);
};

TEST_F(SyncStoreMetricsTest, WithoutBackendEveryWriteFails) {
  store_ = internal::NewAsyncWorkqueueSyncStore("foo", nullptr, "cilium/state/nodes/v1",
                                                Opts([&](auto& o) {
                                                  o.rate_limiter = FastRateLimiter();
                                                  o.metrics = metrics_;
                                                  o.clock = clock_;
                                                }),
                                                &writes_);
  ASSERT_TRUE(store_->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  Start(*store_);
  Settle();
  EXPECT_EQ(Errors(), 1);
  ASSERT_TRUE(FireNextTimer());
  EXPECT_EQ(Errors(), 2);
  ASSERT_TRUE(FireNextTimer());
  EXPECT_EQ(Errors(), 3);
}

TEST_F(SyncStoreMetricsTest, ReportsQueueSizeErrorsAndInitialSync) {
  store_ = internal::NewAsyncWorkqueueSyncStore("foo", backend_, "cilium/state/nodes/v1",
                                                Opts([&](auto& o) {
                                                  o.rate_limiter = FastRateLimiter();
                                                  o.metrics = metrics_;
                                                  o.clock = clock_;
                                                }),
                                                &writes_);
  AsyncSyncStore* store = store_.get();
  EXPECT_EQ(QueueSize(), 0);
  EXPECT_EQ(Errors(), 0);
  EXPECT_EQ(SyncCompleted(), 0);

  // Nothing is processed yet: the gauge counts distinct queued keys.
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  EXPECT_EQ(QueueSize(), 2);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key3", "value3")).ok());
  EXPECT_EQ(QueueSize(), 3);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueA")).ok());
  EXPECT_EQ(QueueSize(), 3);

  // A key being written is no longer counted, even when changed meanwhile.
  backend_->FailNext("cilium/state/nodes/v1/key2", 1);
  Start(*store);
  ASSERT_EQ(writes_.Pending(), 1u);  // key1's write is in flight
  EXPECT_EQ(QueueSize(), 2);
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key1", "")).ok());
  EXPECT_EQ(QueueSize(), 2);

  // key1 (the write in flight had not read its value yet: it writes the delete), key2 (fails),
  // key3, key2 (retry).
  SettleWithRetries();
  EXPECT_THAT(backend_->Calls(), ElementsAre(Delete("cilium/state/nodes/v1/key1"),
                                             Update("cilium/state/nodes/v1/key2", "value2"),
                                             Update("cilium/state/nodes/v1/key3", "value3"),
                                             Update("cilium/state/nodes/v1/key2", "value2")));
  EXPECT_EQ(QueueSize(), 0);
  EXPECT_EQ(Errors(), 1);
  EXPECT_EQ(SyncCompleted(), 0);

  double seen_by_callback = -1;
  ASSERT_TRUE(
      store
          ->Synced(ctx_, {[&](const Context&) { seen_by_callback = SyncCompleted().value_or(-2); }})
          .ok());
  executor_.RunUntilIdle();
  ASSERT_EQ(writes_.Pending(), 1u);  // the synced key's write is in flight
  EXPECT_EQ(SyncCompleted(), 0);     // not written yet
  Settle();
  EXPECT_EQ(seen_by_callback, 1);
  EXPECT_EQ(SyncCompleted(), 1);
  EXPECT_EQ(QueueSize(), 0);
  EXPECT_EQ(Errors(), 1);

  backend_->FailNext("cilium/state/nodes/v1/key4", 2);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key4", "value4")).ok());
  SettleWithRetries();
  EXPECT_EQ(backend_->NumCalls(), 8u);  // and the synced key, then key4 three times
  EXPECT_EQ(Errors(), 3);

  Stop();
  EXPECT_EQ(SyncCompleted(), 0);
  EXPECT_EQ(QueueSize(), 0);
}

}  // namespace
}  // namespace kvstore::store

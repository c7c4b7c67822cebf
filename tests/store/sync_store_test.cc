#include "kvstore/store/sync_store.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "kvstore/workqueue/rate_limiter.h"
#include "prometheus/registry.h"
#include "tests/support/eventually.h"
#include "tests/support/fake_sync_store_backend.h"
#include "tests/support/metrics_reader.h"
#include "tests/support/recording_rate_limiter.h"

namespace kvstore::store {
namespace {

using ::kvstore::testing::Eventually;
using ::kvstore::testing::FakeSyncStoreBackend;
using ::kvstore::testing::ReadMetric;
using ::kvstore::testing::RecordingRateLimiter;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Call = FakeSyncStoreBackend::Call;

Call Update(std::string key, std::string value, bool lease = true) {
  return FakeSyncStoreBackend::UpdateCall(std::move(key), std::move(value), lease);
}
Call Delete(std::string key) { return FakeSyncStoreBackend::DeleteCall(std::move(key)); }

// Retries after 1 ms, 2 ms, ... so failure tests run fast.
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

class SyncStoreTest : public ::testing::Test {
 protected:
  void TearDown() override { Stop(); }

  // The fixture owns the store, so that TearDown stops Run before the store goes away.
  SyncStore* NewStore(std::string prefix, WorkqueueSyncStoreOptions opts = {}) {
    if (!opts.rate_limiter) opts.rate_limiter = FastRateLimiter();
    store_ = NewWorkqueueSyncStore("qux", backend_, std::move(prefix), std::move(opts));
    return store_.get();
  }

  // Runs `store` on a thread until Stop().
  void Start(SyncStore& store) {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    runner_ = std::thread([this, &store] { store.Run(ctx_); });
  }

  void Stop() {
    if (!runner_.joinable()) return;
    cancel_();
    runner_.join();
  }

  // Waits for `n` calls and returns all calls.
  std::vector<Call> CallsAfter(size_t n) {
    EXPECT_TRUE(backend_->WaitForCalls(n)) << "only " << backend_->NumCalls() << " calls";
    return backend_->Calls();
  }

  std::shared_ptr<FakeSyncStoreBackend> backend_ = std::make_shared<FakeSyncStoreBackend>();
  std::unique_ptr<SyncStore> store_;
  Context ctx_;
  CancelFunc cancel_;
  std::thread runner_;
};

TEST_F(SyncStoreTest, WritesKeysInOrderWithLease) {
  SyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  EXPECT_THAT(CallsAfter(2),
              ElementsAre(Update("/foo/bar/key1", "value1"), Update("/foo/bar/key2", "value2")));
}

TEST_F(SyncStoreTest, SkipsUnchangedValue) {
  SyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(1));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key3", "value3")).ok());
  EXPECT_THAT(CallsAfter(2),
              ElementsAre(Update("/foo/bar/key1", "value1"), Update("/foo/bar/key3", "value3")));
}

TEST_F(SyncStoreTest, CoalescesChangesWhileWorkerIsBusy) {
  SyncStore* store = NewStore("/foo/bar");
  backend_->Block("/foo/bar/key4");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key4", "value4")).ok());
  ASSERT_TRUE(Eventually([&] { return backend_->NumBlocked() == 1; }));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueA")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueB")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueC")).ok());
  backend_->Release("/foo/bar/key4");
  ASSERT_TRUE(backend_->WaitForCalls(2));
  // A later key is written after anything still queued for key1 (one worker, FIFO).
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key9", "sentinel")).ok());
  EXPECT_THAT(CallsAfter(3),
              ElementsAre(Update("/foo/bar/key4", "value4"), Update("/foo/bar/key1", "valueC"),
                          Update("/foo/bar/key9", "sentinel")));
}

TEST_F(SyncStoreTest, DeletesKnownKeysAndIgnoresUnknownOnes) {
  SyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key4", "value4")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(1));
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key5", "")).ok());
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key4", "")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(2));
  // Deleting it again is a no-op too, as the store knows it is gone.
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key4", "")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key9", "sentinel")).ok());
  EXPECT_THAT(CallsAfter(3), ElementsAre(Update("/foo/bar/key4", "value4"), Delete("/foo/bar/key4"),
                                         Update("/foo/bar/key9", "sentinel")));
}

TEST_F(SyncStoreTest, UpsertThenDeleteBeforeAnyWriteGivesOneDelete) {
  SyncStore* store = NewStore("/foo/bar");
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key1", "")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key9", "sentinel")).ok());
  Start(*store);
  EXPECT_THAT(CallsAfter(2),
              ElementsAre(Delete("/foo/bar/key1"), Update("/foo/bar/key9", "sentinel")));
}

TEST_F(SyncStoreTest, MarshalErrorIsReturned) {
  SyncStore* store = NewStore("/foo/bar");
  absl::Status status = store->UpsertKey(ctx_, FailingKey());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("broken"));
}

TEST_F(SyncStoreTest, SyncedKeyPathIsAReservedName) {
  SyncStore* store = NewStore("foo/bar");
  absl::Status status = store->UpsertKey(ctx_, KVPair("cilium/synced/qux/foo/bar", "x"));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SyncStoreTest, SecondRunThrows) {
  SyncStore* store = NewStore("foo/bar");
  auto [ctx, cancel] = WithCancel(Context::Background());
  cancel();
  store->Run(ctx);
  EXPECT_THROW(store->Run(ctx), std::logic_error);
}

TEST_F(SyncStoreTest, RetriesFailedUpdate) {
  SyncStore* store = NewStore("/foo/bar");
  backend_->FailNext("/foo/bar/key1", 1);
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "valueC")).ok());
  EXPECT_THAT(CallsAfter(2),
              ElementsAre(Update("/foo/bar/key1", "valueC"), Update("/foo/bar/key1", "valueC")));
}

TEST_F(SyncStoreTest, RetriesFailedDelete) {
  SyncStore* store = NewStore("/foo/bar");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(1));
  backend_->FailNext("/foo/bar/key2", 1);
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key2", "")).ok());
  EXPECT_THAT(CallsAfter(3), ElementsAre(Update("/foo/bar/key2", "value2"), Delete("/foo/bar/key2"),
                                         Delete("/foo/bar/key2")));
}

TEST_F(SyncStoreTest, WritesWithoutLeaseWhenAsked) {
  SyncStore* store = NewStore("/foo/bar", Opts([&](auto& o) { o.with_lease = false; }));
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  EXPECT_THAT(CallsAfter(1), ElementsAre(Update("/foo/bar/key1", "value1", /*lease=*/false)));
}

TEST_F(SyncStoreTest, CustomRateLimiterSeesWhenThenForget) {
  auto limiter = std::make_shared<RecordingRateLimiter>();
  SyncStore* store = NewStore("/foo/bar", Opts([&](auto& o) { o.rate_limiter = limiter; }));
  backend_->FailNext("/foo/bar/key1", 1);
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  EXPECT_THAT(CallsAfter(2),
              ElementsAre(Update("/foo/bar/key1", "value1"), Update("/foo/bar/key1", "value1")));
  ASSERT_TRUE(limiter->WaitForCalls(2));
  EXPECT_THAT(limiter->Calls(), ElementsAre(RecordingRateLimiter::WhenCall("key1"),
                                            RecordingRateLimiter::ForgetCall("key1")));
}

TEST_F(SyncStoreTest, SecondWorkerWritesWhileDeleteIsBlocked) {
  SyncStore* store = NewStore("/foo/bar", Opts([&](auto& o) { o.workers = 2; }));
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(1));
  backend_->Block("/foo/bar/key1");
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key1", "")).ok());
  ASSERT_TRUE(Eventually([&] { return backend_->NumBlocked() == 1; }));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  EXPECT_THAT(CallsAfter(3), ElementsAre(Update("/foo/bar/key1", "value1"), Delete("/foo/bar/key1"),
                                         Update("/foo/bar/key2", "value2")));
  EXPECT_EQ(backend_->NumBlocked(), 1u);
  backend_->Release("/foo/bar/key1");
}

TEST_F(SyncStoreTest, NeverWritesOneKeyTwiceAtOnce) {
  SyncStore* store = NewStore("/foo/bar", Opts([&](auto& o) { o.workers = 4; }));
  backend_->Block("/foo/bar/key1");
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(Eventually([&] { return backend_->NumBlocked() == 1; }));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value2")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(2));
  // key2 passed, but key1's second value waits for the first write to finish.
  EXPECT_EQ(backend_->NumBlocked(), 1u);
  EXPECT_EQ(backend_->NumCalls(), 2u);
  backend_->Release("/foo/bar/key1");
  EXPECT_THAT(CallsAfter(3),
              ElementsAre(Update("/foo/bar/key1", "value1"), Update("/foo/bar/key2", "value2"),
                          Update("/foo/bar/key1", "value2")));
}

TEST_F(SyncStoreTest, SyncedKeyAfterEarlierKeysThenCallbacksInOrder) {
  SyncStore* store = NewStore("foo/bar");
  Start(*store);
  auto callback = [this](std::string name) {
    return [this, name](const Context& ctx) { (void)backend_->Update(ctx, name, "", true); };
  };
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  ASSERT_TRUE(store->Synced(ctx_, {callback("callback/1"), callback("callback/2")}).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key3", "value3")).ok());
  std::vector<Call> calls = CallsAfter(6);
  ASSERT_EQ(calls.size(), 6u);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1], Update("foo/bar/key2", "value2"));
  EXPECT_EQ(calls[2].key, "cilium/synced/qux/foo/bar");
  EXPECT_TRUE(calls[2].lease);
  EXPECT_TRUE(IsRfc3339(calls[2].value)) << calls[2].value;
  EXPECT_EQ(calls[3], Update("callback/1", ""));
  EXPECT_EQ(calls[4], Update("callback/2", ""));
  EXPECT_EQ(calls[5], Update("foo/bar/key3", "value3"));
}

TEST_F(SyncStoreTest, SyncedKeyOverride) {
  SyncStore* store =
      NewStore("foo/bar", Opts([&](auto& o) { o.synced_key_override = "override"; }));
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->Synced(ctx_).ok());
  std::vector<Call> calls = CallsAfter(2);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1].key, "cilium/synced/qux/override");
}

TEST_F(SyncStoreTest, SyncedKeyWaitsForKeyThatFailedFirst) {
  SyncStore* store = NewStore("foo/bar");
  backend_->FailNext("foo/bar/key1", 1);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  ASSERT_TRUE(store->Synced(ctx_).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key3", "value3")).ok());
  Start(*store);
  std::vector<Call> calls = CallsAfter(5);
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
  SyncStore* store = NewStore("foo/bar");
  CallbackLog log;
  Start(*store);
  ASSERT_TRUE(store
                  ->Synced(ctx_, {[](const Context&) { throw std::runtime_error("refused"); },
                                  log.Callback("after")})
                  .ok());
  ASSERT_TRUE(Eventually([&] { return !log.Names().empty(); }));
  EXPECT_THAT(log.Names(), ElementsAre("after"));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  std::vector<Call> calls = CallsAfter(2);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].key, "cilium/synced/qux/foo/bar");
  EXPECT_EQ(calls[1], Update("foo/bar/key1", "value1"));
  Stop();  // returns once its context is done
}

TEST_F(SyncStoreTest, RetriesFailedSyncedKeyWrite) {
  SyncStore* store = NewStore("foo/bar");
  CallbackLog log;
  backend_->FailNext("cilium/synced/qux/foo/bar", 1);
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->Synced(ctx_, {log.Callback("done")}).ok());
  std::vector<Call> calls = CallsAfter(3);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1].key, "cilium/synced/qux/foo/bar");
  EXPECT_EQ(calls[2].key, "cilium/synced/qux/foo/bar");
  ASSERT_TRUE(Eventually([&] { return !log.Names().empty(); }));
  EXPECT_THAT(log.Names(), ElementsAre("done"));
}

TEST_F(SyncStoreTest, SyncedKeyWithTenWorkersWaitsForKeyFailingTwice) {
  SyncStore* store = NewStore("foo/bar", Opts([&](auto& o) { o.workers = 10; }));
  backend_->FailNext("foo/bar/key1", 2);
  Start(*store);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->Synced(ctx_).ok());
  std::vector<Call> calls = CallsAfter(4);
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[1], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[2], Update("foo/bar/key1", "value1"));
  EXPECT_EQ(calls[3].key, "cilium/synced/qux/foo/bar");
}

TEST_F(SyncStoreTest, CallbacksRunOnceInOrderAndOnlyFirstSyncedCounts) {
  SyncStore* store = NewStore("foo/bar");
  CallbackLog log;
  Start(*store);
  ASSERT_TRUE(store->Synced(ctx_, {log.Callback("a"), log.Callback("b"), log.Callback("c")}).ok());
  ASSERT_TRUE(store->Synced(ctx_, {log.Callback("second")}).ok());
  ASSERT_TRUE(Eventually([&] { return log.Names().size() == 3; }));
  // A later key is written after any further synced write (one worker, FIFO).
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key9", "sentinel")).ok());
  std::vector<Call> calls = CallsAfter(2);
  EXPECT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].key, "cilium/synced/qux/foo/bar");
  EXPECT_THAT(log.Names(), ElementsAre("a", "b", "c"));
}

TEST_F(SyncStoreTest, RegistersLeaseObserversWhileRunning) {
  SyncStore* store = NewStore("foo/bar");
  Start(*store);
  ASSERT_TRUE(Eventually([&] { return backend_->ObserverPrefixes().size() == 2; }));
  EXPECT_THAT(backend_->ObserverPrefixes(), ElementsAre("cilium/synced/qux/foo/bar", "foo/bar"));
  Stop();
  EXPECT_THAT(backend_->ObserverPrefixes(), IsEmpty());
}

TEST_F(SyncStoreTest, RewritesKeyWithExpiredLeaseWithItsLastValue) {
  SyncStore* store = NewStore("foo/bar");
  Start(*store);
  ASSERT_TRUE(Eventually([&] { return backend_->ObserverPrefixes().size() == 2; }));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key2", "value2")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(2));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1B")).ok());
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key2", "")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(4));
  backend_->ExpireLease("foo/bar/key1");
  backend_->ExpireLease("foo/bar/key2");     // deleted: not re-created
  backend_->ExpireLease("foo/bar/unknown");  // never upserted
  ASSERT_TRUE(backend_->WaitForCalls(5));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key9", "sentinel")).ok());
  EXPECT_THAT(CallsAfter(6),
              ElementsAre(Update("foo/bar/key1", "value1"), Update("foo/bar/key2", "value2"),
                          Update("foo/bar/key1", "value1B"), Delete("foo/bar/key2"),
                          Update("foo/bar/key1", "value1B"), Update("foo/bar/key9", "sentinel")));
}

// Expired keys are mapped back to names by the inverse of the key layout: a key of a sibling
// prefix ("foo/barkey1" for "foo/bar") is not key1 of this store.
TEST_F(SyncStoreTest, ExpiredLeaseOfASiblingPrefixIsIgnored) {
  SyncStore* store = NewStore("foo/bar");
  Start(*store);
  ASSERT_TRUE(Eventually([&] { return backend_->ObserverPrefixes().size() == 2; }));
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(1));
  backend_->ExpireLease("foo/barkey1");
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key9", "sentinel")).ok());
  backend_->ExpireLease("foo/bar//key1");  // doubled slashes still name key1
  EXPECT_THAT(CallsAfter(3),
              ElementsAre(Update("foo/bar/key1", "value1"), Update("foo/bar/key9", "sentinel"),
                          Update("foo/bar/key1", "value1")));
}

TEST_F(SyncStoreTest, RewritesExpiredSyncedKeyWithoutCallbacks) {
  SyncStore* store = NewStore("foo/bar");
  CallbackLog log;
  Start(*store);
  ASSERT_TRUE(Eventually([&] { return backend_->ObserverPrefixes().size() == 2; }));
  ASSERT_TRUE(store->Synced(ctx_, {log.Callback("once")}).ok());
  ASSERT_TRUE(backend_->WaitForCalls(1));
  ASSERT_TRUE(Eventually([&] { return log.Names().size() == 1; }));
  backend_->ExpireLease("cilium/synced/qux/foo/bar");
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key9", "sentinel")).ok());
  std::vector<Call> calls = CallsAfter(3);
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].key, "cilium/synced/qux/foo/bar");
  EXPECT_EQ(calls[1].key, "cilium/synced/qux/foo/bar");
  EXPECT_EQ(calls[2], Update("foo/bar/key9", "sentinel"));
  EXPECT_THAT(log.Names(), ElementsAre("once"));
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
  store_ = NewWorkqueueSyncStore("foo", nullptr, "cilium/state/nodes/v1", Opts([&](auto& o) {
                                   o.rate_limiter = FastRateLimiter();
                                   o.metrics = metrics_;
                                 }));
  ASSERT_TRUE(store_->UpsertKey(ctx_, KVPair("key1", "value1")).ok());
  Start(*store_);
  EXPECT_TRUE(Eventually([&] { return Errors() >= 2; }));
}

TEST_F(SyncStoreMetricsTest, ReportsQueueSizeErrorsAndInitialSync) {
  store_ = NewWorkqueueSyncStore("foo", backend_, "cilium/state/nodes/v1", Opts([&](auto& o) {
                                   o.rate_limiter = FastRateLimiter();
                                   o.metrics = metrics_;
                                 }));
  SyncStore* store = store_.get();
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
  backend_->Block("cilium/state/nodes/v1/key1");
  backend_->FailNext("cilium/state/nodes/v1/key2", 1);
  Start(*store);
  ASSERT_TRUE(Eventually([&] { return backend_->NumBlocked() == 1; }));
  EXPECT_EQ(QueueSize(), 2);
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key1", "")).ok());
  EXPECT_EQ(QueueSize(), 2);
  backend_->Release("cilium/state/nodes/v1/key1");

  // key1 (update), key2 (fails), key3, key1 (delete), key2 (retry).
  ASSERT_TRUE(backend_->WaitForCalls(5));
  ASSERT_TRUE(Eventually([&] { return QueueSize() == 0; }));
  EXPECT_EQ(Errors(), 1);
  EXPECT_EQ(SyncCompleted(), 0);

  const std::string synced_key = "cilium/synced/foo/cilium/state/nodes/v1";
  backend_->Block(synced_key);
  std::atomic<double> seen_by_callback{-1};
  ASSERT_TRUE(
      store
          ->Synced(ctx_, {[&](const Context&) { seen_by_callback = SyncCompleted().value_or(-2); }})
          .ok());
  ASSERT_TRUE(Eventually([&] { return backend_->NumBlocked() == 1; }));
  EXPECT_EQ(SyncCompleted(), 0);  // not written yet
  backend_->Release(synced_key);
  ASSERT_TRUE(Eventually([&] { return seen_by_callback == 1; }));
  EXPECT_EQ(SyncCompleted(), 1);
  EXPECT_EQ(QueueSize(), 0);
  EXPECT_EQ(Errors(), 1);

  backend_->FailNext("cilium/state/nodes/v1/key4", 2);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key4", "value4")).ok());
  ASSERT_TRUE(backend_->WaitForCalls(9));
  ASSERT_TRUE(Eventually([&] { return Errors() == 3; }));

  Stop();
  EXPECT_EQ(SyncCompleted(), 0);
  EXPECT_EQ(QueueSize(), 0);
}

}  // namespace
}  // namespace kvstore::store

// SyncStore with a backend that accepts batches (SyncStoreBackend::MaxBatchOps > 1): several queued
// keys per backend request, with the same per-key semantics as one write at a time.
#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/task.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "kvstore/store/key.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/workqueue/rate_limiter.h"
#include "store/async_stores.h"
#include "tests/support/fake_sync_store_backend.h"

namespace kvstore::store {
namespace {

using ::kvstore::testing::FakeSyncStoreBackend;
using ::testing::Contains;
using ::testing::Each;
using ::testing::Le;
using ::testing::SizeIs;
using Call = FakeSyncStoreBackend::Call;

// Records each batch (its keys), can fail whole batches, and applies the ops through the fake's
// Update/Delete so that every write is recorded as a call too.
class BatchingBackend final : public FakeSyncStoreBackend {
 public:
  explicit BatchingBackend(size_t max_ops) : max_ops_(max_ops) {}

  size_t MaxBatchOps() const override { return max_ops_; }

  std::vector<absl::Status> ApplyBatch(const Context& ctx, std::span<const WriteOp> ops) override {
    std::vector<std::string> keys;
    for (const WriteOp& op : ops) keys.emplace_back(op.key);
    bool fail = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batches_.push_back(keys);
      if (failing_batches_ > 0) {
        --failing_batches_;
        fail = true;
      }
    }
    if (fail) return std::vector<absl::Status>(ops.size(), absl::UnavailableError("batch failed"));
    return SyncStoreBackend::ApplyBatch(ctx, ops);
  }

  // The next `n` batches fail as a whole, without writing anything.
  void FailBatches(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    failing_batches_ = n;
  }

  std::vector<std::vector<std::string>> Batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }

 private:
  const size_t max_ops_;
  mutable std::mutex mu_;  // guards the fields below
  std::vector<std::vector<std::string>> batches_;
  int failing_batches_ = 0;
};

std::shared_ptr<workqueue::RateLimiter<std::string>> FastRateLimiter() {
  return std::make_shared<workqueue::ItemExponentialFailureRateLimiter<std::string>>(
      std::chrono::milliseconds(1), std::chrono::milliseconds(10));
}

// The store on the test's thread: its workers on `executor_`, its backend requests on `writes_`,
// its retry delays on `clock_`.
class SyncStoreBatchTest : public ::testing::Test {
 protected:
  void TearDown() override { Stop(); }

  internal::AsyncSyncStore* NewStore(size_t max_ops, unsigned workers) {
    backend_ = std::make_shared<BatchingBackend>(max_ops);
    WorkqueueSyncStoreOptions opts;
    opts.workers = workers;
    opts.rate_limiter = FastRateLimiter();
    opts.clock = clock_;
    store_ = internal::NewAsyncWorkqueueSyncStore("qux", backend_, "/foo/bar", std::move(opts),
                                                  &writes_);
    return store_.get();
  }

  void Start() {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    running_ = true;
    kvstore::internal::Spawn(executor_, store_->RunAsync(executor_, ctx_),
                             [returned = returned_] { *returned = true; });
  }

  void Stop() {
    if (!running_) return;
    running_ = false;
    cancel_();
    Settle();
    EXPECT_TRUE(*returned_);
  }

  // Runs the workers and the writes until nothing is queued (time does not move).
  void Settle() {
    while (executor_.RunUntilIdle() + writes_.RunUntilIdle() > 0) {
    }
  }
  // Settles, moving the clock to each retry's time until none is left.
  void SettleWithRetries() {
    Settle();
    for (int i = 0; i < 1000 && clock_->NumTimers() > 0; ++i) {
      clock_->Advance(std::max(clock_->NextTimer() - clock_->Now(), Clock::duration::zero()));
      Settle();
    }
    EXPECT_EQ(clock_->NumTimers(), 0u);
  }

  // Index of the last call on `key` in `calls`, or -1.
  static int LastCallOn(const std::vector<Call>& calls, const std::string& key) {
    for (int i = static_cast<int>(calls.size()) - 1; i >= 0; --i) {
      if (calls[i].key == key) return i;
    }
    return -1;
  }

  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  ManualExecutor executor_;
  ManualExecutor writes_;
  std::shared_ptr<BatchingBackend> backend_;
  std::unique_ptr<internal::AsyncSyncStore> store_;
  Context ctx_ = Context::Background();
  CancelFunc cancel_;
  bool running_ = false;
  std::shared_ptr<bool> returned_ = std::make_shared<bool>(false);
};

constexpr char kSyncedKey[] = "cilium/synced/qux/foo/bar";

TEST_F(SyncStoreBatchTest, WritesQueuedKeysInBatchesThenTheSyncedKey) {
  internal::AsyncSyncStore* store = NewStore(/*max_ops=*/16, /*workers=*/1);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key" + std::to_string(i), "v")).ok());
  }
  bool synced = false;
  ASSERT_TRUE(store->Synced(ctx_, {[&](const Context&) { synced = true; }}).ok());
  Start();
  SettleWithRetries();
  ASSERT_TRUE(synced);

  std::vector<std::vector<std::string>> batches = backend_->Batches();
  // 50 keys queued before Run: batches of 16 (the synced key is never part of a batch).
  EXPECT_THAT(batches, Each(SizeIs(Le(16u))));
  EXPECT_THAT(batches, Contains(SizeIs(16u)));
  for (const auto& batch : batches) EXPECT_THAT(batch, ::testing::Not(Contains(kSyncedKey)));

  std::vector<Call> calls = backend_->Calls();
  ASSERT_THAT(calls, SizeIs(51u));
  EXPECT_EQ(calls.back(), FakeSyncStoreBackend::UpdateCall(kSyncedKey, calls.back().value));
  for (int i = 0; i < 50; ++i) {
    EXPECT_GE(LastCallOn(calls, "/foo/bar/key" + std::to_string(i)), 0) << i;
  }
}

TEST_F(SyncStoreBatchTest, FailedBatchRetriesEachKeyAndSyncedKeyWaits) {
  internal::AsyncSyncStore* store = NewStore(/*max_ops=*/8, /*workers=*/2);
  backend_->FailBatches(2);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key" + std::to_string(i), "v")).ok());
  }
  bool synced = false;
  ASSERT_TRUE(store->Synced(ctx_, {[&](const Context&) { synced = true; }}).ok());
  Start();
  SettleWithRetries();
  ASSERT_TRUE(synced);

  std::vector<Call> calls = backend_->Calls();
  const int synced_at = LastCallOn(calls, kSyncedKey);
  ASSERT_GE(synced_at, 0);
  for (int i = 0; i < 20; ++i) {
    int at = LastCallOn(calls, "/foo/bar/key" + std::to_string(i));
    EXPECT_GE(at, 0) << "key" << i << " never written";
    EXPECT_LT(at, synced_at) << "key" << i << " written after the synced key";
  }
  // Two batches failed without writing, so their keys came back through the rate limiter.
  EXPECT_GE(backend_->Batches().size(), 3u);
}

TEST_F(SyncStoreBatchTest, OneFailedKeyOfABatchIsRetriedAlone) {
  internal::AsyncSyncStore* store = NewStore(/*max_ops=*/8, /*workers=*/1);
  backend_->FailNext("/foo/bar/key3", 1);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key" + std::to_string(i), "v")).ok());
  }
  Start();
  SettleWithRetries();
  ASSERT_EQ(backend_->NumCalls(), 7u);
  std::vector<Call> calls = backend_->Calls();
  int key3_calls = 0;
  for (const Call& call : calls) key3_calls += call.key == "/foo/bar/key3" ? 1 : 0;
  EXPECT_EQ(key3_calls, 2);
  EXPECT_EQ(calls.back().key, "/foo/bar/key3");
}

TEST_F(SyncStoreBatchTest, DeletesAndCoalescedChangesGoThroughBatches) {
  internal::AsyncSyncStore* store = NewStore(/*max_ops=*/8, /*workers=*/1);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("a", "1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("b", "1")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("a", "2")).ok());  // coalesces with the first
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("b", "")).ok());
  Start();
  Settle();
  ASSERT_EQ(backend_->NumCalls(), 2u);
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("c", "sentinel")).ok());
  Settle();
  EXPECT_THAT(backend_->Calls(),
              ::testing::ElementsAre(FakeSyncStoreBackend::UpdateCall("/foo/bar/a", "2"),
                                     FakeSyncStoreBackend::DeleteCall("/foo/bar/b"),
                                     FakeSyncStoreBackend::UpdateCall("/foo/bar/c", "sentinel")));
  // The delete was written: deleting again is a no-op.
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("b", "")).ok());
  ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("d", "sentinel")).ok());
  Settle();
  EXPECT_EQ(backend_->NumCalls(), 4u);
  EXPECT_EQ(backend_->Calls().back().key, "/foo/bar/d");
}

// One write path: a backend that does not batch (MaxBatchOps 1) still gets every key's write,
// upserts and deletes alike, through ApplyBatch, one op at a time; only the synced canary is
// written on its own with Update.
TEST_F(SyncStoreBatchTest, BackendWithoutBatchingGetsEveryKeyThroughApplyBatch) {
  internal::AsyncSyncStore* store = NewStore(/*max_ops=*/1, /*workers=*/2);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->UpsertKey(ctx_, KVPair("key" + std::to_string(i), "v")).ok());
  }
  ASSERT_TRUE(store->DeleteKey(ctx_, KVPair("key4", "")).ok());
  bool synced = false;
  ASSERT_TRUE(store->Synced(ctx_, {[&](const Context&) { synced = true; }}).ok());
  Start();
  SettleWithRetries();
  ASSERT_TRUE(synced);

  std::vector<std::vector<std::string>> batches = backend_->Batches();
  EXPECT_THAT(batches, Each(SizeIs(1u)));
  std::vector<std::string> batched;
  for (const auto& batch : batches) batched.push_back(batch.front());
  EXPECT_THAT(batched,
              ::testing::UnorderedElementsAre("/foo/bar/key0", "/foo/bar/key1", "/foo/bar/key2",
                                              "/foo/bar/key3", "/foo/bar/key4"));
  std::vector<Call> calls = backend_->Calls();
  ASSERT_THAT(calls, SizeIs(6u));
  EXPECT_EQ(calls.back(), FakeSyncStoreBackend::UpdateCall(kSyncedKey, calls.back().value));
  EXPECT_THAT(calls, Contains(FakeSyncStoreBackend::DeleteCall("/foo/bar/key4")));
}

}  // namespace
}  // namespace kvstore::store

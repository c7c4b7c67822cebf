// Batched writes of the etcd backend (SyncStoreBackend::ApplyBatch) against a real etcd, directly
// and through a WorkqueueSyncStore: transactions of up to 128 ops, leases (keys per lease
// respected), deletes, ops that fail on their own, and a lost lease. Then single writes that
// queue behind writes in flight and travel together (WriteBatcher): each keeps its own result,
// permissions and lost leases included.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvstore/mutex.h"
#include "kvstore/store/key.h"
#include "kvstore/store/sync_store.h"
#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

class EtcdBatchTest : public SharedEtcdTest {
 protected:
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    prefix_ = std::string("batch/") +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  }

  std::shared_ptr<Backend> Connect(size_t max_keys_per_lease = 1000) {
    etcd::EtcdConfig config = cluster_->ClientConfig();
    config.max_keys_per_lease = max_keys_per_lease;
    return MustConnect(config);
  }

  std::string prefix_;
  Context ctx_;
};

TEST_F(EtcdBatchTest, AdvertisesTransactionSizedBatches) {
  std::shared_ptr<Backend> backend = Connect();
  EXPECT_EQ(backend->MaxBatchOps(), 128u);
}

TEST_F(EtcdBatchTest, WritesAndDeletesABatchWithLeases) {
  std::shared_ptr<Backend> backend = Connect(/*max_keys_per_lease=*/50);
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "gone", "x", false).ok());
  std::vector<std::string> keys, values;
  for (int i = 0; i < 120; ++i) {
    keys.push_back(prefix_ + "k" + std::to_string(i));
    values.push_back("value-" + std::to_string(i));
  }
  std::vector<WriteOp> ops;
  for (size_t i = 0; i < keys.size(); ++i) {
    ops.push_back(WriteOp{keys[i], std::string_view(values[i]), /*lease=*/i % 2 == 0});
  }
  const std::string gone = prefix_ + "gone";
  ops.push_back(WriteOp{gone, std::nullopt, false});
  std::vector<absl::Status> results = backend->ApplyBatch(ctx_, ops);
  ASSERT_EQ(results.size(), ops.size());
  for (const absl::Status& status : results) EXPECT_TRUE(status.ok()) << status;

  absl::StatusOr<KeyValuePairs> list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), keys.size());
  std::set<int64_t> leases;
  for (size_t i = 0; i < keys.size(); ++i) {
    const Value& value = list->at(keys[i]);
    EXPECT_EQ(value.data, values[i]);
    if (i % 2 == 0) {
      EXPECT_NE(value.lease_id, 0) << keys[i];
      leases.insert(value.lease_id);
    } else {
      EXPECT_EQ(value.lease_id, 0) << keys[i];
    }
  }
  // 60 leased keys, at most 50 per lease.
  EXPECT_EQ(leases.size(), 2u);
  // One transaction: every key has the same mod revision.
  std::set<int64_t> revisions;
  for (const auto& [key, value] : *list) revisions.insert(value.mod_revision);
  EXPECT_EQ(revisions.size(), 1u);
}

TEST_F(EtcdBatchTest, SplitsIntoTransactionsOf128AndByBytes) {
  std::shared_ptr<Backend> backend = Connect();
  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back(prefix_ + "k" + std::to_string(i));
  const std::string big(200 * 1024, 'b');  // 300 x 200 KiB: far above one request's limit
  std::vector<WriteOp> ops;
  for (const std::string& key : keys) ops.push_back(WriteOp{key, std::string_view(big), false});
  std::vector<absl::Status> results = backend->ApplyBatch(ctx_, ops);
  ASSERT_EQ(results.size(), ops.size());
  for (const absl::Status& status : results) EXPECT_TRUE(status.ok()) << status;
  absl::StatusOr<KeyValuePairs> list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->size(), keys.size());
}

TEST_F(EtcdBatchTest, BadOpsFailAloneAndDuplicatesAreSplit) {
  std::shared_ptr<Backend> backend = Connect();
  const std::string a = prefix_ + "a", b = prefix_ + "b";
  const std::string huge(kMaxValueBytes + 1, 'x');
  std::vector<WriteOp> ops = {
      WriteOp{a, std::string_view("1"), false},
      WriteOp{"", std::string_view("x"), false},
      WriteOp{b, std::string_view(huge), false},
      WriteOp{a, std::string_view("2"), false},
  };
  std::vector<absl::Status> results = backend->ApplyBatch(ctx_, ops);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_TRUE(results[0].ok()) << results[0];
  EXPECT_EQ(results[1].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(results[2].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(results[3].ok()) << results[3];
  auto value = backend->Get(ctx_, a);
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->value_or(""), "2");  // in order
}

TEST_F(EtcdBatchTest, LostLeaseIsReplacedAndReported) {
  std::atomic<int> expired = 0;  // outlives the backend, whose executor counts here
  std::shared_ptr<Backend> backend = Connect();
  backend->RegisterLeaseExpiredObserver(prefix_, [&](std::string_view) { ++expired; });
  const std::string a = prefix_ + "a", b = prefix_ + "b";
  ASSERT_TRUE(backend->Update(ctx_, a, "1", true).ok());
  absl::StatusOr<KeyValuePairs> list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok());
  const int64_t lease = list->at(a).lease_id;
  ASSERT_NE(lease, 0);
  // Revoke it behind the backend's back.
  ASSERT_TRUE(cluster_->RevokeLease(lease).ok());

  std::vector<WriteOp> ops = {WriteOp{a, std::string_view("2"), true},
                              WriteOp{b, std::string_view("2"), true}};
  std::vector<absl::Status> results = backend->ApplyBatch(ctx_, ops);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].ok()) << results[0];
  EXPECT_TRUE(results[1].ok()) << results[1];
  list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_NE(list->at(a).lease_id, 0);
  EXPECT_NE(list->at(a).lease_id, lease);
  EXPECT_EQ(list->at(b).lease_id, list->at(a).lease_id);
  EXPECT_TRUE(Eventually([&] { return expired.load() >= 1; }));
  backend->RegisterLeaseExpiredObserver(prefix_, nullptr);
}

// The results of asynchronous writes, by name, as their callbacks report them.
class AsyncResults {
 public:
  Backend::StatusCallback Record(std::string name) {
    return [this, name = std::move(name)](const absl::Status& status) {
      MutexLock guard(mu_);
      results_[name] = status;
      cv_.notify_all();
    };
  }
  // Waits (at most 60 s) until `n` results came; nullopt on timeout.
  std::optional<std::map<std::string, absl::Status>> WaitFor(size_t n) {
    MutexLock lock(mu_);
    if (!WithTimeout(Context::Background(), std::chrono::seconds(60))
             .first.WaitOn(lock, cv_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
               return results_.size() == n;
             })) {
      return std::nullopt;
    }
    return results_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::map<std::string, absl::Status> results_ ABSL_GUARDED_BY(mu_);
};

// Many writes started at once: beyond the few that go at once, they wait and travel together in
// transactions (keys of one transaction share a mod revision), and each caller hears of its own.
TEST_F(EtcdBatchTest, WritesStartedTogetherShareTransactionsAndEachGetsItsResult) {
  std::shared_ptr<Backend> backend = Connect();
  constexpr int kWrites = 200, kDeletes = 50;
  for (int i = 0; i < kDeletes; ++i) {
    ASSERT_TRUE(backend->Update(ctx_, absl::StrCat(prefix_, "old", i), "x", false).ok());
  }
  AsyncResults results;
  for (int i = 0; i < kWrites; ++i) {
    const std::string key = absl::StrCat(prefix_, "k", i);
    backend->UpdateAsync(ctx_, key, absl::StrCat("v", i), /*lease=*/i % 2 == 0,
                         results.Record(key));
    if (i < kDeletes) {
      const std::string old = absl::StrCat(prefix_, "old", i);
      backend->DeleteAsync(ctx_, old, results.Record(old));
    }
  }
  std::optional<std::map<std::string, absl::Status>> done = results.WaitFor(kWrites + kDeletes);
  ASSERT_TRUE(done.has_value());
  for (const auto& [name, status] : *done) EXPECT_TRUE(status.ok()) << name << ": " << status;
  absl::StatusOr<KeyValuePairs> list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), static_cast<size_t>(kWrites)) << "the old keys are gone";
  std::set<int64_t> revisions;
  for (int i = 0; i < kWrites; ++i) {
    const Value& value = list->at(absl::StrCat(prefix_, "k", i));
    EXPECT_EQ(value.data, absl::StrCat("v", i));
    EXPECT_EQ(value.lease_id != 0, i % 2 == 0) << i;
    revisions.insert(value.mod_revision);
  }
  EXPECT_LT(revisions.size(), static_cast<size_t>(kWrites)) << "no two writes travelled together";
}

// A user allowed to write under one prefix only: its writes there and elsewhere, started
// together, travel in the same transactions, which etcd refuses as a whole. Each write still
// gets its own answer.
TEST(EtcdWriteBatcherAuthTest, AWriteRefusedForPermissionFailsAloneInASharedTransaction) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ASSERT_TRUE((*cluster)->EnableAuth("s3cret").ok());
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"role", "add", "writer"},
           {"role", "grant-permission", "writer", "readwrite", "ok/", "--prefix=true"},
           {"user", "add", "alice", "--new-user-password=alicepw"},
           {"user", "grant-role", "alice", "writer"}}) {
    absl::StatusOr<std::string> out = (*cluster)->Etcdctl(args);
    ASSERT_TRUE(out.ok()) << out.status();
  }
  etcd::EtcdConfig config = (*cluster)->ClientConfig();
  config.username = "alice";
  config.password = "alicepw";
  std::shared_ptr<Backend> alice = MustConnect(config);
  ASSERT_NE(alice, nullptr);
  Context ctx;
  AsyncResults results;
  constexpr int kWrites = 100;
  for (int i = 0; i < kWrites; ++i) {
    const std::string key = absl::StrCat(i % 2 == 0 ? "ok/" : "no/", i);
    alice->UpdateAsync(ctx, key, "v", /*lease=*/false, results.Record(key));
  }
  std::optional<std::map<std::string, absl::Status>> done = results.WaitFor(kWrites);
  ASSERT_TRUE(done.has_value());
  for (const auto& [key, status] : *done) {
    if (key.starts_with("ok/")) {
      EXPECT_TRUE(status.ok()) << key << ": " << status;
    } else {
      EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << key << ": " << status;
    }
  }
  std::shared_ptr<Backend> root = MustConnect((*cluster)->ClientConfig());
  ASSERT_NE(root, nullptr);
  absl::StatusOr<KeyValuePairs> written = root->ListPrefix(ctx, "ok/");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->size(), static_cast<size_t>(kWrites / 2));
  absl::StatusOr<KeyValuePairs> refused = root->ListPrefix(ctx, "no/");
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_TRUE(refused->empty());
}

// The session lease revoked behind the backend's back, then many leased writes at once: the
// transactions carrying them are refused (lease not found) and their writes go again alone,
// each of which finds the lease lost and writes with a new one.
TEST_F(EtcdBatchTest, WritesStartedTogetherAfterTheirLeaseWasRevokedAllLand) {
  std::shared_ptr<Backend> backend = Connect();
  const std::string first = prefix_ + "first";
  ASSERT_TRUE(backend->Update(ctx_, first, "1", true).ok());
  absl::StatusOr<KeyValuePairs> list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok());
  const int64_t lease = list->at(first).lease_id;
  ASSERT_TRUE(cluster_->RevokeLease(lease).ok());

  AsyncResults results;
  constexpr int kWrites = 100;
  for (int i = 0; i < kWrites; ++i) {
    const std::string key = absl::StrCat(prefix_, "k", i);
    backend->UpdateAsync(ctx_, key, "v", /*lease=*/true, results.Record(key));
  }
  std::optional<std::map<std::string, absl::Status>> done = results.WaitFor(kWrites);
  ASSERT_TRUE(done.has_value());
  for (const auto& [key, status] : *done) EXPECT_TRUE(status.ok()) << key << ": " << status;
  list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), static_cast<size_t>(kWrites)) << "the first key went with its lease";
  for (const auto& [key, value] : *list) {
    EXPECT_NE(value.lease_id, 0) << key;
    EXPECT_NE(value.lease_id, lease) << key;
  }
}

TEST_F(EtcdBatchTest, SyncStoreWritesThousandsOfKeysInBatches) {
  std::shared_ptr<Backend> backend = Connect(/*max_keys_per_lease=*/1000);
  const std::string prefix = "cilium/state/" + prefix_ + "v1";
  store::WorkqueueSyncStoreOptions opts;
  opts.workers = 4;
  auto sync_store = store::NewWorkqueueSyncStore("c1", backend, prefix, opts);
  constexpr int kKeys = 3000;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(
        sync_store->UpsertKey(ctx_, store::KVPair(absl::StrCat("k", i), std::to_string(i))).ok());
  }
  std::atomic<bool> synced = false;
  ASSERT_TRUE(sync_store->Synced(ctx_, {[&](const Context&) { synced = true; }}).ok());
  auto [run_ctx, cancel] = WithCancel(Context::Background());
  std::thread runner([&, run_ctx = run_ctx] { sync_store->Run(run_ctx); });
  EXPECT_TRUE(Eventually([&] { return synced.load(); }, std::chrono::seconds(60)));
  cancel();
  runner.join();

  absl::StatusOr<KeyValuePairs> list = backend->ListPrefix(ctx_, prefix + "/");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), static_cast<size_t>(kKeys));
  std::set<int64_t> leases;
  int64_t last_key_revision = 0;
  for (const auto& [key, value] : *list) {
    leases.insert(value.lease_id);
    last_key_revision = std::max(last_key_revision, value.mod_revision);
  }
  EXPECT_EQ(leases.count(0), 0u);
  EXPECT_GE(leases.size(), 3u);  // at most 1000 keys per lease
  // The synced canary follows every key.
  absl::StatusOr<KeyValuePairs> synced_key =
      backend->ListPrefix(ctx_, "cilium/synced/c1/" + prefix);
  ASSERT_TRUE(synced_key.ok());
  ASSERT_EQ(synced_key->size(), 1u);
  EXPECT_GT(synced_key->begin()->second.mod_revision, last_key_revision);
}

// An etcd started with --max-txn-ops below the batch size refuses every batch of 128: the backend
// learns the server's limit and goes on with smaller transactions, so all 20,000 keys arrive.
TEST(EtcdSmallTxnLimitTest, SyncStoreShrinksItsBatchesToTheServersLimit) {
  EtcdClusterOptions options;
  options.extra_args = {"--max-txn-ops=16"};
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  std::shared_ptr<Backend> backend = MustConnect((*cluster)->ClientConfig());
  Context ctx;
  const std::string prefix = "cilium/state/smalltxn/v1";
  store::WorkqueueSyncStoreOptions opts;
  opts.workers = 8;
  auto sync_store = store::NewWorkqueueSyncStore("c1", backend, prefix, opts);
  constexpr int kKeys = 20000;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(
        sync_store->UpsertKey(ctx, store::KVPair(absl::StrCat("k", i), std::to_string(i))).ok());
  }
  std::atomic<bool> synced = false;
  ASSERT_TRUE(sync_store->Synced(ctx, {[&](const Context&) { synced = true; }}).ok());
  auto [run_ctx, cancel] = WithCancel(Context::Background());
  std::thread runner([&, run_ctx = run_ctx] { sync_store->Run(run_ctx); });
  EXPECT_TRUE(Eventually([&] { return synced.load(); }, std::chrono::seconds(120)));
  cancel();
  runner.join();

  EXPECT_LE(backend->MaxBatchOps(), 16u);
  EXPECT_GT(backend->MaxBatchOps(), 1u) << "a limit of 16 needs no single writes";
  absl::StatusOr<KeyValuePairs> list = backend->ListPrefix(ctx, prefix + "/");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), static_cast<size_t>(kKeys));
  for (const auto& [key, value] : *list) {
    ASSERT_EQ(key, absl::StrCat(prefix, "/k", value.data));
  }
}

// ApplyBatch itself, refused for size: the results are per op and every op is written.
TEST(EtcdSmallTxnLimitTest, RefusedBatchIsWrittenInSmallerTransactions) {
  EtcdClusterOptions options;
  options.extra_args = {"--max-txn-ops=5"};
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  std::shared_ptr<Backend> backend = MustConnect((*cluster)->ClientConfig());
  Context ctx;
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.push_back(absl::StrCat("small/k", i));
  std::vector<WriteOp> ops;
  for (const std::string& key : keys) ops.push_back(WriteOp{key, std::string_view(key), true});
  std::vector<absl::Status> results = backend->ApplyBatch(ctx, ops);
  ASSERT_EQ(results.size(), ops.size());
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
  // The 40 ops were one refused transaction: halved to 20, 10, then 5, which etcd accepts.
  EXPECT_EQ(backend->MaxBatchOps(), 5u);
  absl::StatusOr<KeyValuePairs> list = backend->ListPrefix(ctx, "small/");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->size(), keys.size());
}

}  // namespace
}  // namespace kvstore::testing

// Faults of a single etcd member while SyncStore and SharedStore write: kill -9 and restart,
// SIGSTOP longer than the request timeout, compaction past every watcher's revision, the session
// lease revoked from the side, and a collaborator that dies without Close. After each fault etcd
// must hold exactly the intended keys and every cache must equal etcd's content, with no delete
// reported twice.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvstore/etcd/etcd_backend.h"
#include "tests/integration/etcd_test_util.h"
#include "tests/support/etcd_fixture.h"
#include "tests/support/store_checks.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;

constexpr char kSyncPrefix[] = "cilium/state/faultsync/v1";
constexpr char kSharedPrefix[] = "cilium/state/faultshared/v1";
// Convergence after a fault: generous, only a broken library waits this long.
constexpr auto kConvergeTimeout = 60s;

// The port of a "127.0.0.1:port" endpoint.
int PortOf(const std::string& endpoint) {
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

void AddShared(KeyMap& want, const std::string& owner, int count, const std::string& value) {
  for (int i = 0; i < count; ++i) want[absl::StrCat(owner, "/", i)] = value;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    config_ = cluster_->ClientConfig();
    config_.request_timeout = 1500ms;
  }

  // Joins collaborator `id` (its own client); its key names start with "<id>/".
  std::unique_ptr<Collaborator> JoinCollaborator(const std::string& id,
                                                 const etcd::EtcdConfig& config) {
    absl::StatusOr<std::unique_ptr<Collaborator>> c =
        Collaborator::Join(MustConnect(config), kSharedPrefix, id + "/");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // Reads the prefix through a fresh client (with the default request timeout); "" when it
  // equals `want`.
  std::string CompareEtcd(const std::string& prefix, const KeyMap& want) {
    return testing::CompareEtcd(cluster_->ClientConfig(), prefix, want);
  }

  // Waits until etcd, the watch store and every collaborator agree with what was written.
  void ExpectConverged(const KeyMap& sync_want, const WatchingStore* watching,
                       const KeyMap& shared_want, const std::vector<Collaborator*>& collaborators) {
    auto start = std::chrono::steady_clock::now();
    std::vector<const WatchingStore*> watchers;
    if (watching) watchers.push_back(watching);
    std::string reason = PollUntil(
        [&] {
          return CompareConvergence(cluster_->ClientConfig(), kSyncPrefix, sync_want, watchers,
                                    kSharedPrefix, shared_want, collaborators);
        },
        kConvergeTimeout);
    EXPECT_EQ(reason, "");
    std::printf("[ figures  ] converged %.1f s after the fault ended\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (watching) {
      EXPECT_EQ(watching->observer().SpuriousDeletes(), 0u)
          << "watch store reported deletes of keys it did not hold, e.g. "
          << (watching->observer().SpuriousDeleteNames().empty()
                  ? ""
                  : watching->observer().SpuriousDeleteNames()[0]);
    }
    for (Collaborator* c : collaborators) {
      EXPECT_EQ(c->observer().SpuriousDeletes(), 0u)
          << "shared store reported deletes of keys it did not hold, e.g. "
          << (c->observer().SpuriousDeleteNames().empty() ? ""
                                                          : c->observer().SpuriousDeleteNames()[0]);
    }
  }

  // Waits until `name` is in etcd under the sync prefix: writes are then in flight.
  void WaitWritten(const std::string& name) {
    std::shared_ptr<Backend> reader = MustConnect(cluster_->ClientConfig());
    std::string key = std::string(kSyncPrefix) + "/" + name;
    EXPECT_EQ(PollUntil(
                  [&]() -> std::string {
                    auto value = reader->Get(Context(), key);
                    return value.ok() && value->has_value() ? "" : "not yet written";
                  },
                  30s),
              "");
    reader->Close();
  }

  std::unique_ptr<EtcdCluster> cluster_;
  etcd::EtcdConfig config_;
};

// 20,000 upserts (the figure); the member is killed with SIGKILL once the first ones are
// in etcd and restarted after more upserts, updates and deletes were queued.
TEST_F(FaultTest, MemberKilledAndRestartedDuringUpserts) {
  constexpr int kUpserts = 20000;
  RunningSyncStore sync(MustConnect(config_), kSyncPrefix);
  WatchingStore watching(MustConnect(config_), kSyncPrefix);
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", config_);
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", config_);
  ASSERT_TRUE(a && b);

  KeyMap want, shared_want;
  ASSERT_TRUE(sync.UpsertRange(0, kUpserts / 2, "v1-", want).ok());
  std::future<absl::Status> pa = a->PublishRange("a", 0, 50, "a1", shared_want);
  WaitWritten(RunningSyncStore::KeyName(kUpserts / 8));
  ASSERT_TRUE(cluster_->KillMember(0).ok());
  std::printf("[ figures  ] killed with %zu of %d keys seen by the watch store\n",
              watching.observer().Size(), kUpserts);

  // While the member is down: the rest of the keys, updates of early keys, deletes of others.
  ASSERT_TRUE(sync.UpsertRange(kUpserts / 2, kUpserts, "v1-", want).ok());
  ASSERT_TRUE(sync.UpsertRange(0, kUpserts / 10, "v2-", want).ok());
  for (int i = kUpserts / 10; i < kUpserts / 5; i += 7) {
    ASSERT_TRUE(sync.Delete(RunningSyncStore::KeyName(i)).ok());
    want.erase(RunningSyncStore::KeyName(i));
  }
  std::future<absl::Status> pb = b->PublishRange("b", 0, 50, "b1", shared_want);
  std::this_thread::sleep_for(2s);  // the outage itself
  ASSERT_TRUE(cluster_->StartMember(0).ok());
  ASSERT_TRUE(pa.get().ok());
  ASSERT_TRUE(pb.get().ok());

  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});
  std::printf("[ figures  ] %d upserts; failed publishes during the outage: a=%llu b=%llu\n",
              kUpserts, static_cast<unsigned long long>(a->FailedPublishes()),
              static_cast<unsigned long long>(b->FailedPublishes()));
}

TEST_F(FaultTest, MemberPausedLongerThanTheRequestTimeout) {
  constexpr int kUpserts = 4000;
  RunningSyncStore sync(MustConnect(config_), kSyncPrefix);
  WatchingStore watching(MustConnect(config_), kSyncPrefix);
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", config_);
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", config_);
  ASSERT_TRUE(a && b);

  KeyMap want, shared_want;
  ASSERT_TRUE(sync.UpsertRange(0, kUpserts / 2, "v1-", want).ok());
  WaitWritten(RunningSyncStore::KeyName(kUpserts / 8));
  ASSERT_TRUE(cluster_->PauseMember(0).ok());
  ASSERT_TRUE(sync.UpsertRange(kUpserts / 2, kUpserts, "v1-", want).ok());
  ASSERT_TRUE(sync.UpsertRange(0, kUpserts / 10, "v2-", want).ok());
  for (int i = kUpserts / 10; i < kUpserts / 5; i += 3) {
    ASSERT_TRUE(sync.Delete(RunningSyncStore::KeyName(i)).ok());
    want.erase(RunningSyncStore::KeyName(i));
  }
  std::future<absl::Status> pa = a->PublishRange("a", 0, 20, "a1", shared_want);
  std::future<absl::Status> pb = b->PublishRange("b", 0, 20, "b1", shared_want);
  // Paused well past request_timeout (1.5 s), so requests in flight time out.
  std::this_thread::sleep_for(4s);
  ASSERT_TRUE(cluster_->ResumeMember(0).ok());
  ASSERT_TRUE(pa.get().ok());
  ASSERT_TRUE(pb.get().ok());
  EXPECT_GT(a->FailedPublishes() + b->FailedPublishes(), 0u) << "no request timed out";

  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});
}

// A call on an open connection to a member that stopped answering ends with the request timeout,
// enforced by the client itself: the member cannot answer, and the connection stays open.
TEST_F(FaultTest, CallToAPausedMemberEndsAtTheRequestTimeout) {
  std::shared_ptr<Backend> backend = MustConnect(config_);
  ASSERT_TRUE(backend->Update(Context(), "paused/k", "1", false).ok());
  ASSERT_TRUE(cluster_->PauseMember(0).ok());
  absl::Status status = backend->Update(Context(), "paused/k", "2", false);
  ASSERT_TRUE(cluster_->ResumeMember(0).ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_NE(status.message().find("request timeout of 1500 ms"), absl::string_view::npos) << status;
  EXPECT_TRUE(Retry([&] { return backend->Update(Context(), "paused/k", "3", false); }).ok());
}

// The watchers' connections are cut (a TCP proxy) while keys change, the history is compacted to
// the current revision, then the network comes back: every watcher must re-list.
TEST_F(FaultTest, CompactionPastEveryWatchersRevision) {
  constexpr int kKeys = 2000;
  TcpProxy proxy(PortOf(cluster_->ClientEndpoint(0)));
  etcd::EtcdConfig proxied = config_;
  proxied.endpoints = {proxy.Endpoint()};

  RunningSyncStore sync(MustConnect(config_), kSyncPrefix);
  WatchingStore watching(MustConnect(proxied), kSyncPrefix);
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", proxied);  // behind the proxy
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", config_);  // direct
  ASSERT_TRUE(a && b);

  KeyMap want, shared_want;
  ASSERT_TRUE(sync.UpsertRange(0, kKeys, "v1-", want).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(b->Publish(absl::StrCat("b/", i), "b1").ok());
  AddShared(shared_want, "b", 20, "b1");
  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});
  const uint64_t deletes_before = watching.observer().Deletes();
  const uint64_t a_deletes_before = a->observer().Deletes();

  proxy.Cut();
  ASSERT_TRUE(sync.UpsertRange(0, kKeys / 4, "v2-", want).ok());              // modified
  ASSERT_TRUE(sync.UpsertRange(kKeys, kKeys + kKeys / 4, "v1-", want).ok());  // created
  std::set<std::string> deleted;
  for (int i = kKeys / 4; i < kKeys / 2; i += 2) {
    ASSERT_TRUE(sync.Delete(RunningSyncStore::KeyName(i)).ok());
    want.erase(RunningSyncStore::KeyName(i));
    deleted.insert(RunningSyncStore::KeyName(i));
  }
  for (int i = 0; i < 10; ++i) {
    b->store().DeleteLocalKey(Context(), store::KVPair(absl::StrCat("b/", i), ""));
    shared_want.erase(absl::StrCat("b/", i));
  }
  for (int i = 20; i < 30; ++i) ASSERT_TRUE(b->Publish(absl::StrCat("b/", i), "b2").ok());
  for (int i = 20; i < 30; ++i) shared_want[absl::StrCat("b/", i)] = "b2";
  // Every change is in etcd before the history goes.
  ASSERT_EQ(PollUntil([&] { return CompareEtcd(kSyncPrefix, want); }, kConvergeTimeout), "");
  ASSERT_EQ(PollUntil([&] { return CompareEtcd(kSharedPrefix, shared_want); }, kConvergeTimeout),
            "");
  ASSERT_TRUE(cluster_->Compact().ok());
  proxy.Restore();

  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});
  // Each key deleted while cut is reported gone exactly once.
  EXPECT_EQ(watching.observer().Deletes() - deletes_before, deleted.size());
  for (const std::string& name : deleted) {
    EXPECT_EQ(watching.observer().DeletesOf(name), 1u) << name;
  }
  EXPECT_EQ(a->observer().Deletes() - a_deletes_before, 10u);
  EXPECT_EQ(watching.WatchReturns(), 0);
}

// A watch store stops consuming (its observer blocks) while thousands of 1 KiB values change, and
// the history is compacted past everything it was sent: once it consumes again it must end with
// etcd's content, whether its watch was cancelled as compacted (re-list) or events were buffered.
TEST_F(FaultTest, CompactionPastASlowConsumersRevision) {
  constexpr int kKeys = 500;
  constexpr int kRounds = 16;  // 8,000 changes, 8 MiB of values
  RunningSyncStore sync(MustConnect(config_), kSyncPrefix);
  WatchingStore slow(MustConnect(config_), kSyncPrefix);
  WatchingStore fast(MustConnect(config_), kSyncPrefix);
  KeyMap want;
  ASSERT_TRUE(sync.UpsertRange(0, kKeys, "v0-", want).ok());
  ExpectConverged(want, &slow, {}, {});

  slow.observer().Hold();
  const std::string padding(1024, 'p');
  std::set<std::string> deleted;
  for (int round = 1; round <= kRounds; ++round) {
    ASSERT_TRUE(sync.UpsertRange(0, kKeys, absl::StrCat("v", round, "-", padding, "-"), want).ok());
    ASSERT_EQ(PollUntil([&] { return CompareEtcd(kSyncPrefix, want); }, kConvergeTimeout), "");
  }
  for (int i = 0; i < kKeys; i += 5) {
    ASSERT_TRUE(sync.Delete(RunningSyncStore::KeyName(i)).ok());
    want.erase(RunningSyncStore::KeyName(i));
    deleted.insert(RunningSyncStore::KeyName(i));
  }
  ASSERT_EQ(PollUntil([&] { return CompareEtcd(kSyncPrefix, want); }, kConvergeTimeout), "");
  ASSERT_TRUE(cluster_->Compact().ok());
  ASSERT_TRUE(sync.UpsertRange(kKeys, kKeys + 10, "after-", want)
                  .ok());  // the first event past the compaction
  EXPECT_EQ(PollUntil([&] { return fast.Compare(want); }, kConvergeTimeout), "")
      << "a watch store on another client must not wait for the slow one";
  slow.observer().Release();

  ExpectConverged(want, &slow, {}, {});
  EXPECT_EQ(fast.Compare(want), "");
  for (const std::string& name : deleted) EXPECT_EQ(slow.observer().DeletesOf(name), 1u) << name;
  EXPECT_EQ(fast.observer().SpuriousDeletes(), 0u);
}

// The network between etcd and one agent (a SyncStore and a collaborator, behind a TCP proxy) is
// cut for longer than their lease TTL while they keep writing: etcd expires their keys, the other
// collaborator sees them go; once the network is back the agent notices the lost lease and puts
// every key back on a new one.
TEST_F(FaultTest, NetworkCutLongerThanTheLeaseTtl) {
  constexpr auto kTtl = 3s;
  TcpProxy proxy(PortOf(cluster_->ClientEndpoint(0)));
  etcd::EtcdConfig agent = config_;
  agent.endpoints = {proxy.Endpoint()};
  agent.lease_ttl = kTtl;
  RunningSyncStore sync(MustConnect(agent), kSyncPrefix);
  WatchingStore watching(MustConnect(config_), kSyncPrefix);
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", agent);
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", config_);
  ASSERT_TRUE(a && b);

  KeyMap want, shared_want;
  ASSERT_TRUE(sync.UpsertRange(0, 1000, "v1-", want).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(a->Publish(absl::StrCat("a/", i), "a1").ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(b->Publish(absl::StrCat("b/", i), "b1").ok());
  AddShared(shared_want, "a", 20, "a1");
  AddShared(shared_want, "b", 20, "b1");
  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});
  absl::StatusOr<std::map<std::string, int64_t>> before = ReadLeases(config_, kSyncPrefix);
  ASSERT_TRUE(before.ok());

  proxy.Cut();
  ASSERT_TRUE(sync.UpsertRange(1000, 1200, "v1-", want).ok());
  ASSERT_TRUE(sync.UpsertRange(0, 100, "v2-", want).ok());
  std::future<absl::Status> pa =
      a->PublishRange("a", 0, 5, "a2", shared_want);  // blocks until the network is back
  // The lease expires on the server: the other side sees the agent's keys go.
  KeyMap b_only;
  AddShared(b_only, "b", 20, "b1");
  EXPECT_EQ(PollUntil([&] { return b->Compare(b_only); }, kTtl + 15s), "");
  EXPECT_EQ(PollUntil([&] { return watching.Compare({}); }, kTtl + 15s), "");
  proxy.Restore();
  ASSERT_TRUE(pa.get().ok());

  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});
  absl::StatusOr<std::map<std::string, int64_t>> after = ReadLeases(config_, kSyncPrefix);
  ASSERT_TRUE(after.ok());
  for (const auto& [name, id] : *after) {
    EXPECT_GT(id, 0) << name;
    if (before->count(name)) {
      EXPECT_NE(id, before->at(name)) << name;
    }
  }
}

// The member is killed and restarted three times while a stream of upserts and deletes goes on.
TEST_F(FaultTest, MemberKilledRepeatedly) {
  RunningSyncStore sync(MustConnect(config_), kSyncPrefix);
  WatchingStore watching(MustConnect(config_), kSyncPrefix);
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", config_);
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", config_);
  ASSERT_TRUE(a && b);
  KeyMap want, shared_want;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      std::string value = absl::StrCat("v", i);
      ASSERT_TRUE(sync.Upsert(RunningSyncStore::KeyName(i % 3000), value).ok());
      want[RunningSyncStore::KeyName(i % 3000)] = value;
      if (i % 11 == 0) {
        ASSERT_TRUE(sync.Delete(RunningSyncStore::KeyName((i / 11) % 3000)).ok());
        want.erase(RunningSyncStore::KeyName((i / 11) % 3000));
      }
      std::this_thread::sleep_for(200us);
    }
  });
  std::future<absl::Status> pa = a->PublishRange("a", 0, 60, "a1", shared_want);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(700ms);
    ASSERT_TRUE(cluster_->KillMember(0).ok());
    std::this_thread::sleep_for(700ms);
    ASSERT_TRUE(cluster_->StartMember(0).ok());
  }
  stop = true;
  writer.join();
  ASSERT_TRUE(pa.get().ok());
  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});
  std::printf("[ figures  ] %zu keys after 3 kills; failed publishes: %llu\n", want.size(),
              static_cast<unsigned long long>(a->FailedPublishes()));
}

// The lease of a SyncStore's keys, then a collaborator's, is revoked with etcdctl while writes go
// on: the leased keys vanish, the SyncStore re-writes them (lease-expired observer) and the
// SharedStore re-creates its own (it sees their deletes).
TEST_F(FaultTest, SessionLeaseRevokedFromOutside) {
  constexpr int kKeys = 1500;  // two leases of at most 1000 keys
  etcd::EtcdConfig leased = config_;
  leased.lease_ttl = 6s;  // keep-alive every 2 s notices the loss soon
  RunningSyncStore sync(MustConnect(leased), kSyncPrefix);
  WatchingStore watching(MustConnect(config_), kSyncPrefix);
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", leased);
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", leased);
  ASSERT_TRUE(a && b);

  KeyMap want, shared_want;
  ASSERT_TRUE(sync.UpsertRange(0, kKeys, "v1-", want).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(a->Publish(absl::StrCat("a/", i), "a1").ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(b->Publish(absl::StrCat("b/", i), "b1").ok());
  AddShared(shared_want, "a", 20, "a1");
  AddShared(shared_want, "b", 20, "b1");
  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});

  absl::StatusOr<std::map<std::string, int64_t>> leases = ReadLeases(config_, kSyncPrefix);
  ASSERT_TRUE(leases.ok()) << leases.status();
  const int64_t sync_lease = leases->at(RunningSyncStore::KeyName(0));
  std::set<std::string> on_lease;
  for (const auto& [name, id] : *leases) {
    if (id == sync_lease) on_lease.insert(name);
  }
  ASSERT_GT(sync_lease, 0);
  ASSERT_LT(on_lease.size(), want.size());  // only one of the leases goes
  absl::StatusOr<std::map<std::string, int64_t>> shared_leases = ReadLeases(config_, kSharedPrefix);
  ASSERT_TRUE(shared_leases.ok());
  const int64_t a_lease = shared_leases->at("a/0");
  ASSERT_GT(a_lease, 0);

  // Writes go on while the leases are revoked.
  std::atomic<bool> stop{false};
  KeyMap written_meanwhile;
  std::thread writer([&] {
    for (int i = kKeys; i < kKeys + 300 && !stop; ++i) {
      std::string value = "v1-" + std::to_string(i);
      ASSERT_TRUE(sync.Upsert(RunningSyncStore::KeyName(i), value).ok());
      written_meanwhile[RunningSyncStore::KeyName(i)] = value;
      std::this_thread::sleep_for(5ms);
    }
  });
  ASSERT_TRUE(cluster_->RevokeLease(sync_lease).ok());
  ASSERT_TRUE(cluster_->RevokeLease(a_lease).ok());
  writer.join();
  want.insert(written_meanwhile.begin(), written_meanwhile.end());

  ExpectConverged(want, &watching, shared_want, {a.get(), b.get()});
  // They did vanish (each reported gone once), and came back on other leases.
  for (const std::string& name : on_lease) {
    EXPECT_EQ(watching.observer().DeletesOf(name), 1u) << name;
  }
  leases = ReadLeases(config_, kSyncPrefix);
  ASSERT_TRUE(leases.ok());
  for (const auto& [name, id] : *leases) EXPECT_NE(id, sync_lease) << name;
  shared_leases = ReadLeases(config_, kSharedPrefix);
  ASSERT_TRUE(shared_leases.ok());
  for (const auto& [name, id] : *shared_leases) {
    EXPECT_NE(id, a_lease) << name;
    EXPECT_GT(id, 0) << name;
  }
  EXPECT_EQ(b->observer().DeletesOf("a/0"), 1u);
}

// A collaborator dies without Close (its client stops keeping the lease alive): the others keep
// its keys for the lease TTL, then see each of them deleted once.
TEST_F(FaultTest, CollaboratorKilledWithoutCloseExpiresAfterTheTtl) {
  constexpr auto kTtl = 4s;
  etcd::EtcdConfig short_lease = config_;
  short_lease.lease_ttl = kTtl;
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", short_lease);
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", config_);
  ASSERT_TRUE(a && b);
  KeyMap shared_want;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(a->Publish(absl::StrCat("a/", i), "a1").ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(b->Publish(absl::StrCat("b/", i), "b1").ok());
  AddShared(shared_want, "a", 20, "a1");
  AddShared(shared_want, "b", 20, "b1");
  ExpectConverged({}, nullptr, shared_want, {a.get(), b.get()});

  // The crash: keep-alive stops, nothing is deleted.
  const auto crash = std::chrono::steady_clock::now();
  a->backend().Close();
  KeyMap b_only;
  AddShared(b_only, "b", 20, "b1");
  ASSERT_EQ(PollUntil([&] { return b->Compare(b_only); }, kTtl + 20s), "");
  const auto gone = b->observer().FirstDeleteTime();
  const double after = std::chrono::duration<double>(gone - crash).count();
  std::printf("[ figures  ] lease TTL %lld s: first delete seen %.2f s after the crash\n",
              static_cast<long long>(kTtl.count()), after);
  // The last keep-alive was at most TTL/3 before the crash: keys live at least 2/3 of the TTL.
  EXPECT_GE(gone - crash, kTtl * 2 / 3 - 200ms);
  EXPECT_EQ(CompareEtcd(kSharedPrefix, b_only), "");
  for (int i = 0; i < 20; ++i) EXPECT_EQ(b->observer().DeletesOf(absl::StrCat("a/", i)), 1u);
  EXPECT_EQ(b->observer().SpuriousDeletes(), 0u);
}

}  // namespace
}  // namespace kvstore::testing

// Faults of a 3-member etcd cluster while SyncStore and SharedStore write: the leader killed, a
// member paused (SIGSTOP: partitioned away while clients hold connections to it). etcd must end
// with exactly the intended keys and every cache must equal it, with no delete reported twice.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
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

constexpr char kSyncPrefix[] = "cilium/state/clustersync/v1";
constexpr char kSharedPrefix[] = "cilium/state/clustershared/v1";
constexpr auto kConvergeTimeout = 60s;

class ClusterFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EtcdClusterOptions options;
    options.members = 3;
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    config_ = cluster_->ClientConfig();
    config_.request_timeout = 2s;
  }

  // The client config with the endpoints rotated to start at `first`.
  etcd::EtcdConfig ConfigFrom(int first) const {
    etcd::EtcdConfig config = config_;
    std::rotate(config.endpoints.begin(), config.endpoints.begin() + first, config.endpoints.end());
    return config;
  }

  std::unique_ptr<Collaborator> JoinCollaborator(const std::string& id,
                                                 const etcd::EtcdConfig& config) {
    absl::StatusOr<std::unique_ptr<Collaborator>> c =
        Collaborator::Join(MustConnect(config), kSharedPrefix, id + "/");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  // etcd is read through a fresh client to the running members.
  void ExpectConverged(const KeyMap& sync_want, const std::vector<const WatchingStore*>& watchers,
                       const KeyMap& shared_want, const std::vector<Collaborator*>& collaborators) {
    auto start = std::chrono::steady_clock::now();
    std::string reason = PollUntil(
        [&] {
          return CompareConvergence(config_, kSyncPrefix, sync_want, watchers, kSharedPrefix,
                                    shared_want, collaborators);
        },
        kConvergeTimeout);
    EXPECT_EQ(reason, "");
    std::printf("[ figures  ] converged %.1f s after the fault\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    for (const WatchingStore* w : watchers) {
      EXPECT_EQ(w->observer().SpuriousDeletes(), 0u);
      EXPECT_EQ(w->WatchReturns(), 0);
    }
    for (Collaborator* c : collaborators) EXPECT_EQ(c->observer().SpuriousDeletes(), 0u);
  }

  void WaitWritten(const std::string& name) {
    std::shared_ptr<Backend> reader = MustConnect(config_);
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

  // One member stops answering while every client holds a connection to it (round robin; each
  // client lists it first): requests to it time out, keep-alive pings give it up, and everything
  // converges without it, then again once it is back.
  void RunPausedMember(bool leader_paused);

  std::unique_ptr<EtcdCluster> cluster_;
  etcd::EtcdConfig config_;
};

TEST_F(ClusterFaultTest, LeaderKilledDuringWrites) {
  constexpr int kUpserts = 6000;
  RunningSyncStore sync(MustConnect(config_), kSyncPrefix);
  std::vector<std::unique_ptr<WatchingStore>> watchers;
  for (int m = 0; m < 3; ++m) {
    watchers.push_back(std::make_unique<WatchingStore>(MustConnect(ConfigFrom(m)), kSyncPrefix));
  }
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", ConfigFrom(0));
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", ConfigFrom(1));
  ASSERT_TRUE(a && b);

  KeyMap want, shared_want;
  ASSERT_TRUE(sync.UpsertRange(0, kUpserts / 2, "v1-", want).ok());
  std::future<absl::Status> pa = a->PublishRange("a", 0, 50, "a1", shared_want);
  WaitWritten(RunningSyncStore::KeyName(kUpserts / 8));
  absl::StatusOr<int> leader = cluster_->LeaderIndex();
  ASSERT_TRUE(leader.ok()) << leader.status();
  ASSERT_TRUE(cluster_->KillMember(*leader).ok());
  std::printf("[ figures  ] leader m%d killed with %zu of %d keys seen by a watch store\n", *leader,
              watchers[0]->observer().Size(), kUpserts);

  ASSERT_TRUE(sync.UpsertRange(kUpserts / 2, kUpserts, "v1-", want).ok());
  ASSERT_TRUE(sync.UpsertRange(0, kUpserts / 10, "v2-", want).ok());
  for (int i = kUpserts / 10; i < kUpserts / 5; i += 7) {
    ASSERT_TRUE(sync.Delete(RunningSyncStore::KeyName(i)).ok());
    want.erase(RunningSyncStore::KeyName(i));
  }
  std::future<absl::Status> pb = b->PublishRange("b", 0, 50, "b1", shared_want);
  ASSERT_TRUE(pa.get().ok());
  ASSERT_TRUE(pb.get().ok());
  std::vector<const WatchingStore*> views;
  for (auto& w : watchers) views.push_back(w.get());
  ExpectConverged(want, views, shared_want, {a.get(), b.get()});

  // The old leader comes back and catches up; writes go on.
  ASSERT_TRUE(cluster_->StartMember(*leader).ok());
  ASSERT_TRUE(sync.UpsertRange(kUpserts, kUpserts + 100, "v1-", want).ok());
  std::future<absl::Status> pc = a->PublishRange("a", 50, 60, "a2", shared_want);
  ASSERT_TRUE(pc.get().ok());
  ExpectConverged(want, views, shared_want, {a.get(), b.get()});
}

void ClusterFaultTest::RunPausedMember(bool leader_paused) {
  absl::StatusOr<int> leader = cluster_->LeaderIndex();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int paused = leader_paused ? *leader : (*leader + 1) % 3;
  constexpr int kUpserts = 2000;
  RunningSyncStore sync(MustConnect(ConfigFrom(paused)), kSyncPrefix);
  WatchingStore watching(MustConnect(ConfigFrom(paused)), kSyncPrefix);
  std::unique_ptr<Collaborator> a = JoinCollaborator("a", ConfigFrom(paused));
  std::unique_ptr<Collaborator> b = JoinCollaborator("b", ConfigFrom(paused));
  ASSERT_TRUE(a && b);

  KeyMap want, shared_want;
  ASSERT_TRUE(sync.UpsertRange(0, kUpserts / 2, "v1-", want).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(a->Publish(absl::StrCat("a/", i), "a1").ok());
  for (int i = 0; i < 10; ++i) shared_want[absl::StrCat("a/", i)] = "a1";
  ExpectConverged(want, {&watching}, shared_want, {a.get(), b.get()});

  ASSERT_TRUE(cluster_->PauseMember(paused).ok());
  std::printf("[ figures  ] paused m%d (%s)\n", paused, leader_paused ? "leader" : "follower");
  ASSERT_TRUE(sync.UpsertRange(kUpserts / 2, kUpserts, "v1-", want).ok());
  ASSERT_TRUE(sync.UpsertRange(0, kUpserts / 10, "v2-", want).ok());
  for (int i = kUpserts / 10; i < kUpserts / 5; i += 3) {
    ASSERT_TRUE(sync.Delete(RunningSyncStore::KeyName(i)).ok());
    want.erase(RunningSyncStore::KeyName(i));
  }
  std::future<absl::Status> pa = a->PublishRange("a", 10, 30, "a2", shared_want);
  std::future<absl::Status> pb = b->PublishRange("b", 0, 30, "b1", shared_want);
  ASSERT_TRUE(pa.get().ok());
  ASSERT_TRUE(pb.get().ok());
  ExpectConverged(want, {&watching}, shared_want, {a.get(), b.get()});

  ASSERT_TRUE(cluster_->ResumeMember(paused).ok());
  ASSERT_TRUE(sync.UpsertRange(kUpserts, kUpserts + 100, "v1-", want).ok());
  ExpectConverged(want, {&watching}, shared_want, {a.get(), b.get()});
}

TEST_F(ClusterFaultTest, FollowerPausedWhileClientsAreConnectedToIt) {
  RunPausedMember(/*leader_paused=*/false);
}

TEST_F(ClusterFaultTest, LeaderPausedWhileClientsAreConnectedToIt) {
  RunPausedMember(/*leader_paused=*/true);
}

}  // namespace
}  // namespace kvstore::testing

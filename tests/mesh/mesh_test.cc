// The Mesh over in-memory clusters: Cilium's layout for several remotes, cluster configs,
// canaries, drains, the config directory and the metrics.
#include "kvstore/mesh/mesh.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/mesh/heartbeat.h"
#include "kvstore/paths.h"
#include "tests/support/eventually.h"
#include "tests/support/metrics_reader.h"
#include "tests/support/while_running.h"

namespace kvstore::mesh {
namespace {

using namespace std::chrono_literals;
using ::kvstore::testing::Eventually;
using ::kvstore::testing::kEventuallyTimeout;
using ::kvstore::testing::ReadMetric;
using ::kvstore::testing::WhileRunning;
using ::testing::HasSubstr;
using ::testing::Not;

std::optional<std::string> GetValue(Backend& backend, const std::string& key) {
  absl::StatusOr<std::optional<std::string>> value = backend.Get(Context(), key);
  if (!value.ok()) return std::nullopt;
  return *value;
}

size_t CountPrefix(Backend& backend, const std::string& prefix) {
  absl::StatusOr<KeyValuePairs> pairs = backend.ListPrefix(Context(), prefix);
  return pairs.ok() ? pairs->size() : 0;
}

// A remote cluster: its own in-memory store, with its state written as Cilium's agents and
// clustermesh-apiserver write it.
struct Remote {
  explicit Remote(std::string cluster_name, memory::InMemoryOptions opts = {})
      : name(std::move(cluster_name)),
        store(memory::InMemoryStore::Create(std::move(opts))),
        client(store->NewClient(name)) {}

  void Put(const std::string& key, const std::string& value) {
    ASSERT_TRUE(client->Update(Context(), key, value, false).ok()) << key;
  }
  void WriteConfig(const std::string& json) { Put("cilium/cluster-config/" + name, json); }
  // One key of each kind, named after the cluster.
  void WriteState() {
    Put("cilium/state/nodes/v1/" + name + "/node-" + name, "node of " + name);
    Put("cilium/state/services/v1/" + name + "/default/web", "web of " + name);
    Put("cilium/state/identities/v1/id/1000", "labels of " + name);
    Put("cilium/state/identities/v1/value/k8s:app=web/10.0.0.1", "1000");  // not mirrored
    Put("cilium/state/ip/v1/default/10.0.0.1", "ip of " + name);
    Put("cilium/state/nodes/v1/other/node-x", "someone else's");  // not mirrored
  }

  std::string name;
  std::shared_ptr<memory::InMemoryStore> store;
  std::shared_ptr<Backend> client;
};

class MeshTest : public ::testing::Test {
 protected:
  MeshTest()
      : target_store_(memory::InMemoryStore::Create()), target_(target_store_->NewClient()) {}

  ~MeshTest() override { StopMesh(); }

  MeshOptions Options() {
    MeshOptions options;
    options.target = target_;
    options.heartbeat_interval = 0ms;
    options.config_poll_interval = 10ms;
    options.registry = &registry_;
    options.local_cluster_name = "local";
    options.on_event = [this](const MeshEvent& event) {
      std::lock_guard lock(events_mu_);
      events_.push_back(event);
    };
    return options;
  }

  void StartMesh(MeshOptions options) {
    absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::New(std::move(options));
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = *std::move(mesh);
    auto [ctx, cancel] = WithCancel(Context());
    cancel_ = cancel;
    runner_ = std::thread([this, ctx = ctx] { mesh_->Run(ctx); });
  }

  void StopMesh() {
    if (cancel_) cancel_();
    if (runner_.joinable()) runner_.join();
  }

  void Add(const Remote& remote) {
    RemoteCluster cluster;
    cluster.name = remote.name;
    cluster.backend = remote.client;
    ASSERT_TRUE(mesh_->AddCluster(std::move(cluster)).ok());
  }

  std::optional<RemoteClusterStatus> StatusOf(const std::string& name) {
    for (RemoteClusterStatus& status : mesh_->Status()) {
      if (status.name == name) return status;
    }
    return std::nullopt;
  }

  bool Ready(const std::string& name) {
    std::optional<RemoteClusterStatus> status = StatusOf(name);
    return status.has_value() && status->ready;
  }

  bool SawEvent(MeshEvent::Type type, const std::string& cluster) {
    std::lock_guard lock(events_mu_);
    for (const MeshEvent& event : events_) {
      if (event.type == type && event.cluster == cluster) return true;
    }
    return false;
  }

  std::optional<double> Gauge(const std::string& name, const std::string& cluster) {
    return ReadMetric(
        registry_, name,
        {{"source_cluster", "local"}, {"source_node_name", ""}, {"target_cluster", cluster}});
  }

  prometheus::Registry registry_;
  std::shared_ptr<memory::InMemoryStore> target_store_;
  std::shared_ptr<Backend> target_;
  std::unique_ptr<Mesh> mesh_;
  CancelFunc cancel_;
  std::thread runner_;
  std::mutex events_mu_;
  std::vector<MeshEvent> events_;
};

// The mesh, its target and the remotes' in-memory stores all on one ManualExecutor (the mesh's
// blocking backend calls too: MeshOptions::blocking_executor), every timer on the FakeClock:
// what the mesh does happens when the test runs the executor, on the test's thread, and is
// asserted exactly. Mesh::Run blocks its caller: it runs on a thread of the test that only waits
// (its poll of the config directory is a day away on the FakeClock, and there is no directory);
// RemoveCluster, AddCluster and the end of Run wait for the mesh's tasks, so the test runs the
// executor meanwhile (WhileRunning).
class DrivenMeshTest : public MeshTest {
 protected:
  DrivenMeshTest() {
    target_store_ = memory::InMemoryStore::Create(MemoryOptions());
    target_ = target_store_->NewClient();
  }
  ~DrivenMeshTest() override { StopDrivenMesh(); }

  memory::InMemoryOptions MemoryOptions() {
    memory::InMemoryOptions opts;
    opts.clock = clock_;
    opts.executor = executor_;
    return opts;
  }
  std::unique_ptr<Remote> NewRemote(std::string name) {
    return std::make_unique<Remote>(std::move(name), MemoryOptions());
  }

  MeshOptions Options() {
    MeshOptions options = MeshTest::Options();
    options.executor = executor_;
    options.blocking_executor = executor_;
    options.clock = clock_;
    options.config_poll_interval = 24h;
    // Run's first act: its first write tells the test that Run has started.
    options.heartbeat_interval = 24h;
    return options;
  }

  void StartMesh(MeshOptions options) {
    absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::New(std::move(options));
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = *std::move(mesh);
    auto [ctx, cancel] = WithCancel(Context());
    cancel_ = cancel;
    runner_ = std::thread([this, ctx = ctx] {
      mesh_->Run(ctx);
      run_returned_ = true;
      executor_->Post([] {});  // wakes StopDrivenMesh's wait
    });
    ASSERT_TRUE(executor_->RunOneOrWait(std::chrono::steady_clock::now() + kEventuallyTimeout));
    Run();
  }

  // Cancels Run and runs the executor until Run returned.
  void StopDrivenMesh() {
    if (!runner_.joinable()) return;
    cancel_();
    auto deadline = std::chrono::steady_clock::now() + kEventuallyTimeout;
    while (!run_returned_) {
      if (executor_->RunOneOrWait(deadline) || run_returned_) continue;
      ADD_FAILURE() << "Mesh::Run has not returned; waiting on";
      deadline = std::chrono::steady_clock::time_point::max();
    }
    runner_.join();
    Run();
  }

  // AddCluster waits for no task unless it replaces a drain (AddWhileDraining).
  void Add(const Remote& remote) {
    RemoteCluster cluster;
    cluster.name = remote.name;
    cluster.backend = remote.client;
    ASSERT_TRUE(mesh_->AddCluster(std::move(cluster)).ok());
  }
  void AddWhileDraining(const Remote& remote) {
    RemoteCluster cluster;
    cluster.name = remote.name;
    cluster.backend = remote.client;
    ASSERT_TRUE(WhileRunning(*executor_, [&] { return mesh_->AddCluster(cluster); }).ok());
  }
  absl::Status Remove(const std::string& name) {
    return WhileRunning(*executor_, [&] { return mesh_->RemoveCluster(name); });
  }

  // Runs what the executor has queued.
  void Run() { executor_->RunUntilIdle(); }
  // Moves the clock, then runs what fell due.
  void Advance(Clock::duration d) {
    clock_->Advance(d);
    Run();
  }
  // Moves the clock to the earliest timer (a retry's back-off), then runs what fell due.
  void AdvanceToNextTimer() {
    Advance(std::max(clock_->NextTimer() - clock_->Now(), Clock::duration::zero()));
  }

  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::shared_ptr<ManualExecutor> executor_ = std::make_shared<ManualExecutor>();
  std::atomic<bool> run_returned_{false};
};

TEST_F(DrivenMeshTest, MirrorsCiliumsLayoutOfEveryRemote) {
  std::vector<std::unique_ptr<Remote>> remotes;
  for (int i = 1; i <= 3; ++i) {
    remotes.push_back(NewRemote("c" + std::to_string(i)));
    remotes.back()->WriteConfig(R"({"id":)" + std::to_string(i) + "}");
    remotes.back()->WriteState();
  }
  StartMesh(Options());
  for (const auto& remote : remotes) Add(*remote);
  for (const auto& remote : remotes) EXPECT_FALSE(Ready(remote->name));  // nothing ran yet
  Run();
  for (const auto& remote : remotes) {
    const std::string& c = remote->name;
    SCOPED_TRACE(c);
    EXPECT_TRUE(Ready(c));
    EXPECT_EQ(GetValue(*target_, "cilium/cache/nodes/v1/" + c + "/node-" + c), "node of " + c);
    EXPECT_EQ(GetValue(*target_, "cilium/cache/services/v1/" + c + "/default/web"), "web of " + c);
    EXPECT_EQ(GetValue(*target_, "cilium/cache/identities/v1/" + c + "/id/1000"), "labels of " + c);
    EXPECT_EQ(GetValue(*target_, "cilium/cache/ip/v1/" + c + "/10.0.0.1"), "ip of " + c);
    EXPECT_EQ(CountPrefix(*target_, "cilium/cache/identities/v1/" + c + "/"), 1u);
    for (const char* kind : {"nodes", "services", "identities", "ip"}) {
      EXPECT_TRUE(GetValue(*target_, "cilium/synced/" + c + "/cilium/cache/" + kind + "/v1"))
          << kind;
    }
    // The remote's config, as a kvstoremesh serves it.
    const std::string id = c.substr(1);
    EXPECT_EQ(GetValue(*target_, "cilium/cluster-config/" + c),
              R"({"id":)" + id + R"(,"capabilities":{"syncedCanaries":true,"cached":true}})");
    std::optional<RemoteClusterStatus> status = StatusOf(c);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(status->connected);
    ASSERT_TRUE(status->config.has_value());
    EXPECT_EQ(status->config->id, static_cast<uint32_t>(std::stoi(id)));
    ASSERT_EQ(status->prefixes.size(), 4u);
    for (const PrefixStatus& prefix : status->prefixes) {
      EXPECT_TRUE(prefix.synced) << prefix.name;
      EXPECT_EQ(prefix.keys, 1u) << prefix.name;
    }
    EXPECT_EQ(Gauge("cilium_clustermesh_remote_cluster_readiness_status", c), 1.0);
  }
  // Each cache holds its own cluster's keys only (4 kinds x 3 clusters), nothing of "other".
  EXPECT_EQ(CountPrefix(*target_, "cilium/cache/"), 12u);
  EXPECT_EQ(ReadMetric(registry_, "cilium_clustermesh_remote_clusters",
                       {{"source_cluster", "local"}, {"source_node_name", ""}}),
            3.0);

  // Live changes.
  Remote& c2 = *remotes[1];
  c2.Put("cilium/state/nodes/v1/c2/node-new", "new");
  ASSERT_TRUE(c2.client->Delete(Context(), "cilium/state/ip/v1/default/10.0.0.1").ok());
  EXPECT_FALSE(GetValue(*target_, "cilium/cache/nodes/v1/c2/node-new").has_value());
  Run();
  EXPECT_EQ(GetValue(*target_, "cilium/cache/nodes/v1/c2/node-new"), "new");
  EXPECT_FALSE(GetValue(*target_, "cilium/cache/ip/v1/c2/10.0.0.1").has_value());
  EXPECT_EQ(GetValue(*target_, "cilium/cache/ip/v1/c1/10.0.0.1"), "ip of c1");
}

// As Cilium's agents: a remote whose clustermesh-apiserver stopped writing cilium/.heartbeat is
// not ready, counted from the connection until the first write, and ready again once written.
TEST_F(DrivenMeshTest, ARemoteWhoseHeartbeatIsStaleIsNotReadyUntilItIsWrittenAgain) {
  auto remote = NewRemote("c1");
  remote->WriteConfig(R"({"id":1})");
  remote->WriteState();
  StartMesh(Options());
  Add(*remote);
  Run();
  ASSERT_TRUE(Ready("c1"));
  EXPECT_FALSE(StatusOf("c1")->last_heartbeat.has_value());

  // No heartbeat for remote_heartbeat_timeout (2 min), counted from the connection.
  Advance(2min - 1ms);
  EXPECT_TRUE(Ready("c1"));
  Advance(1ms);
  EXPECT_FALSE(Ready("c1"));
  std::optional<RemoteClusterStatus> stale = StatusOf("c1");
  ASSERT_TRUE(stale.has_value());
  EXPECT_TRUE(stale->connected);
  EXPECT_THAT(stale->status, HasSubstr("cilium/.heartbeat"));
  EXPECT_EQ(Gauge("cilium_clustermesh_remote_cluster_readiness_status", "c1"), 0.0);

  remote->Put("cilium/.heartbeat", FormatHeartbeat(std::chrono::system_clock::now()));
  Run();
  EXPECT_TRUE(Ready("c1"));
  EXPECT_TRUE(StatusOf("c1")->last_heartbeat.has_value());
  EXPECT_THAT(StatusOf("c1")->status, Not(HasSubstr("cilium/.heartbeat")));
  EXPECT_EQ(Gauge("cilium_clustermesh_remote_cluster_readiness_status", "c1"), 1.0);
}

TEST_F(DrivenMeshTest, ARemoteHeartbeatTimeoutOfZeroIsNotChecked) {
  auto remote = NewRemote("c1");
  remote->WriteConfig(R"({"id":1})");
  remote->WriteState();
  MeshOptions options = Options();
  options.remote_heartbeat_timeout = 0ms;
  StartMesh(options);
  Add(*remote);
  Run();
  ASSERT_TRUE(Ready("c1"));
  for (int i = 0; i < 20; ++i) {
    Advance(1min);  // health checks and config rounds run as they fall due
    EXPECT_TRUE(Ready("c1")) << i;
  }
}

TEST_F(DrivenMeshTest, WaitsForEachCanaryOfARemoteThatWritesThem) {
  auto remote = NewRemote("c1");
  remote->WriteConfig(R"({"id":1,"capabilities":{"syncedCanaries":true}})");
  remote->WriteState();
  remote->Put("cilium/synced/c1/cilium/state/nodes/v1", "2026-12-03T08:00:00Z");
  StartMesh(Options());
  Add(*remote);
  Run();
  EXPECT_TRUE(GetValue(*target_, "cilium/cache/nodes/v1/c1/node-c1").has_value());
  EXPECT_TRUE(GetValue(*target_, "cilium/synced/c1/cilium/cache/nodes/v1").has_value());
  // The services' canary is not there: neither are they.
  EXPECT_FALSE(GetValue(*target_, "cilium/cache/services/v1/c1/default/web").has_value());
  EXPECT_FALSE(Ready("c1"));
  for (const char* kind : {"services", "identities", "ip"}) {
    remote->Put(std::string("cilium/synced/c1/cilium/state/") + kind + "/v1", "now");
  }
  Run();
  EXPECT_TRUE(Ready("c1"));
  EXPECT_EQ(GetValue(*target_, "cilium/cache/services/v1/c1/default/web"), "web of c1");
}

TEST_F(DrivenMeshTest, ReadsTheCacheOfACachedRemote) {
  auto remote = NewRemote("c1");
  remote->WriteConfig(R"({"id":9,"capabilities":{"cached":true,"maxConnectedClusters":511}})");
  remote->Put("cilium/cache/nodes/v1/c1/n1", "n1");
  remote->Put("cilium/cache/identities/v1/c1/id/7", "i7");
  remote->Put("cilium/state/nodes/v1/c1/stale", "not read");
  StartMesh(Options());
  Add(*remote);
  Run();
  EXPECT_TRUE(Ready("c1"));
  EXPECT_EQ(GetValue(*target_, "cilium/cache/nodes/v1/c1/n1"), "n1");
  EXPECT_EQ(GetValue(*target_, "cilium/cache/identities/v1/c1/id/7"), "i7");
  EXPECT_FALSE(GetValue(*target_, "cilium/cache/nodes/v1/c1/stale").has_value());
  EXPECT_EQ(GetValue(*target_, "cilium/cluster-config/c1"),
            R"({"id":9,"capabilities":{"syncedCanaries":true,"cached":true,)"
            R"("maxConnectedClusters":511}})");
}

TEST_F(DrivenMeshTest, WritesTheClusterConfigAgainWhenDeletedOrChangedInTheTarget) {
  auto remote = NewRemote("c1");
  remote->WriteConfig(R"({"id":5})");
  StartMesh(Options());
  Add(*remote);
  Run();
  const std::string key = "cilium/cluster-config/c1";
  const std::string expected = R"({"id":5,"capabilities":{"syncedCanaries":true,"cached":true}})";
  ASSERT_EQ(GetValue(*target_, key), expected);
  ASSERT_TRUE(target_->Delete(Context(), key).ok());
  Run();  // at once, not at the next refresh: the clock does not move
  EXPECT_EQ(GetValue(*target_, key), expected);
  ASSERT_TRUE(target_->Update(Context(), key, R"({"id":6})", false).ok());
  Run();
  EXPECT_EQ(GetValue(*target_, key), expected);
}

TEST_F(DrivenMeshTest, AMissingOrInvalidClusterConfigIsAFailureUntilFixed) {
  auto remote = NewRemote("c1");
  remote->WriteState();
  StartMesh(Options());
  Add(*remote);
  Run();
  std::optional<RemoteClusterStatus> status = StatusOf("c1");
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->failures, 1u);
  EXPECT_FALSE(status->connected);
  EXPECT_THAT(status->last_error, HasSubstr("cilium/cluster-config/c1 not found"));
  EXPECT_TRUE(SawEvent(MeshEvent::Type::kFailure, "c1"));
  EXPECT_EQ(Gauge("cilium_clustermesh_remote_cluster_failures", "c1"), 1.0);
  EXPECT_FALSE(GetValue(*target_, "cilium/cache/nodes/v1/c1/node-c1").has_value());

  remote->WriteConfig(R"({"id":0})");  // ID 0 is reserved
  Run();
  EXPECT_EQ(StatusOf("c1")->failures, 1u);  // read again only after the back-off
  AdvanceToNextTimer();
  EXPECT_EQ(StatusOf("c1")->failures, 2u);
  EXPECT_THAT(StatusOf("c1")->last_error, HasSubstr("cluster ID 0"));
  remote->WriteConfig(R"({"id":1})");
  AdvanceToNextTimer();
  EXPECT_TRUE(Ready("c1"));
  EXPECT_EQ(GetValue(*target_, "cilium/cache/nodes/v1/c1/node-c1"), "node of c1");
}

TEST_F(MeshTest, RejectsBadClusterNames) {
  StartMesh(Options());
  Remote remote("c1");
  for (const char* bad : {"", "Upper", "a/b", "-x"}) {
    RemoteCluster cluster;
    cluster.name = bad;
    cluster.backend = remote.client;
    EXPECT_EQ(mesh_->AddCluster(std::move(cluster)).code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  RemoteCluster twice;
  twice.name = "c1";
  twice.backend = remote.client;
  MirroredPrefix nodes{"nodes", "cilium/state/nodes/v1/c1", "cilium/cache/nodes/v1/c1",
                       "cilium/cache/nodes/v1", "cilium/state/nodes/v1"};
  MirroredPrefix same_target = nodes;
  same_target.name = "other";
  same_target.source_synced_key = "cilium/state/other/v1";
  twice.prefixes = {nodes, same_target};
  EXPECT_THAT(mesh_->AddCluster(twice).message(), HasSubstr("share"));
  RemoteCluster no_backend;
  no_backend.name = "c1";
  EXPECT_EQ(mesh_->AddCluster(no_backend).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mesh_->RemoveCluster("unknown").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Mesh::New(MeshOptions{}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DrivenMeshTest, RemovalDeletesTheConfigAtOnceAndTheCacheAfterTheGracePeriod) {
  auto c1 = NewRemote("c1");
  auto c2 = NewRemote("c2");
  for (Remote* remote : {c1.get(), c2.get()}) {
    remote->WriteConfig(R"({"id":1})");
    remote->WriteState();
  }
  MeshOptions options = Options();
  options.drain_grace_period = 3min;
  StartMesh(std::move(options));
  Add(*c1);
  Add(*c2);
  Run();
  ASSERT_TRUE(Ready("c1"));
  ASSERT_TRUE(Ready("c2"));

  ASSERT_TRUE(Remove("c1").ok());
  Run();
  EXPECT_TRUE(SawEvent(MeshEvent::Type::kRemoved, "c1"));
  EXPECT_FALSE(GetValue(*target_, "cilium/cluster-config/c1").has_value());
  EXPECT_TRUE(StatusOf("c1")->draining);
  // The cache stays through the grace period, and no longer follows the remote.
  c1->Put("cilium/state/nodes/v1/c1/after-removal", "x");
  Advance(3min - 1ms);
  EXPECT_FALSE(SawEvent(MeshEvent::Type::kDrained, "c1"));
  EXPECT_EQ(CountPrefix(*target_, "cilium/cache/nodes/v1/c1/"), 1u);
  EXPECT_TRUE(GetValue(*target_, "cilium/synced/c1/cilium/cache/nodes/v1").has_value());

  Advance(1ms);
  EXPECT_TRUE(SawEvent(MeshEvent::Type::kDrained, "c1"));
  EXPECT_EQ(CountPrefix(*target_, "cilium/cache/nodes/v1/c1/"), 0u);
  EXPECT_EQ(CountPrefix(*target_, "cilium/cache/identities/v1/c1/"), 0u);
  EXPECT_EQ(CountPrefix(*target_, "cilium/synced/c1/"), 0u);
  EXPECT_FALSE(StatusOf("c1").has_value());
  // The other cluster is untouched.
  EXPECT_EQ(CountPrefix(*target_, "cilium/cache/"), 4u);
  EXPECT_TRUE(GetValue(*target_, "cilium/cluster-config/c2").has_value());
  EXPECT_FALSE(Gauge("cilium_clustermesh_remote_cluster_readiness_status", "c1").has_value());
}

TEST_F(DrivenMeshTest, AClusterAddedBackDuringTheGracePeriodKeepsItsCache) {
  auto remote = NewRemote("c1");
  remote->WriteConfig(R"({"id":1})");
  remote->WriteState();
  StartMesh(Options());
  Add(*remote);
  Run();
  ASSERT_TRUE(Ready("c1"));
  ASSERT_TRUE(Remove("c1").ok());
  Run();
  ASSERT_TRUE(SawEvent(MeshEvent::Type::kRemoved, "c1"));
  EXPECT_FALSE(GetValue(*target_, "cilium/cluster-config/c1").has_value());
  AddWhileDraining(*remote);  // cancels the drain, waiting for its task
  Run();
  EXPECT_TRUE(GetValue(*target_, "cilium/cluster-config/c1").has_value());
  EXPECT_TRUE(Ready("c1"));
  Advance(10min);  // long past the grace period
  remote->Put("cilium/state/nodes/v1/c1/later", "later");
  Run();
  EXPECT_TRUE(GetValue(*target_, "cilium/cache/nodes/v1/c1/later").has_value());
  EXPECT_FALSE(SawEvent(MeshEvent::Type::kDrained, "c1"));
  EXPECT_EQ(CountPrefix(*target_, "cilium/cache/nodes/v1/c1/"), 2u);
}

// --clustermesh-config: files name the clusters; their contents say which in-memory cluster
// to open ("endpoints: NAME").
class MeshDirectoryTest : public MeshTest {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("mesh-dir-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    StopMesh();
    std::filesystem::remove_all(dir_);
  }

  void WriteFile(const std::string& name, const std::string& contents) {
    std::ofstream(dir_ / name) << contents;
  }

  MeshOptions DirectoryOptions() {
    MeshOptions options = Options();
    options.config_directory = dir_.string();
    options.drain_grace_period = 0ms;
    options.open_backend =
        [this](const RemoteCluster& cluster) -> absl::StatusOr<std::shared_ptr<Backend>> {
      std::ifstream in(cluster.config_path);
      std::string word, which;
      in >> word >> which;
      std::lock_guard lock(opened_mu_);
      opened_.push_back(cluster.name + "=" + which);
      auto it = remotes_.find(which);
      if (it == remotes_.end()) return absl::NotFoundError("no such remote " + which);
      return it->second->store->NewClient(cluster.name);
    };
    return options;
  }

  std::filesystem::path dir_;
  std::map<std::string, std::unique_ptr<Remote>> remotes_;  // by what a file names
  std::mutex opened_mu_;
  std::vector<std::string> opened_;
};

TEST_F(MeshDirectoryTest, FilesAddedChangedAndRemovedConnectReconnectAndDrain) {
  for (const char* which : {"first", "second"}) {
    remotes_[which] = std::make_unique<Remote>("c1");
    remotes_[which]->WriteConfig(R"({"id":1})");
  }
  remotes_["first"]->Put("cilium/state/nodes/v1/c1/only-in-first", "1");
  remotes_["first"]->Put("cilium/state/nodes/v1/c1/in-both", "first");
  remotes_["second"]->Put("cilium/state/nodes/v1/c1/in-both", "second");
  WriteFile("c1", "endpoints: first\n");
  WriteFile("notes.txt", "no etcd config here\n");  // ignored: no "endpoints:"
  WriteFile("local", "endpoints: first\n");         // the target's own cluster: ignored
  std::filesystem::create_directories(dir_ / "..data");
  StartMesh(DirectoryOptions());
  ASSERT_TRUE(Eventually([&] { return Ready("c1"); }));
  EXPECT_EQ(GetValue(*target_, "cilium/cache/nodes/v1/c1/in-both"), "first");
  EXPECT_EQ(mesh_->Status().size(), 1u);

  // The file now points elsewhere: reconnect; what the new remote lacks goes.
  WriteFile("c1", "endpoints: second\n");
  EXPECT_TRUE(Eventually([&] {
    return GetValue(*target_, "cilium/cache/nodes/v1/c1/in-both") == "second" &&
           !GetValue(*target_, "cilium/cache/nodes/v1/c1/only-in-first").has_value();
  }));
  {
    std::lock_guard lock(opened_mu_);
    EXPECT_EQ(opened_, (std::vector<std::string>{"c1=first", "c1=second"}));
  }

  // A badly named file is reported, not mirrored.
  WriteFile("Bad_Name", "endpoints: first\n");
  EXPECT_TRUE(Eventually([&] { return SawEvent(MeshEvent::Type::kFailure, "Bad_Name"); }));

  std::filesystem::remove(dir_ / "c1");
  EXPECT_TRUE(Eventually([&] { return SawEvent(MeshEvent::Type::kDrained, "c1"); }));
  EXPECT_EQ(CountPrefix(*target_, "cilium/cache/"), 0u);
  EXPECT_EQ(CountPrefix(*target_, "cilium/synced/"), 0u);
  EXPECT_FALSE(GetValue(*target_, "cilium/cluster-config/c1").has_value());
  EXPECT_TRUE(mesh_->Status().empty());
}

}  // namespace
}  // namespace kvstore::mesh

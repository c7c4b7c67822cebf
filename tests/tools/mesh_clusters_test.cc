// `kvstorectl mesh --clustermesh-config DIR` end to end, as Cilium's kvstoremesh runs: three
// source clusters and one target, each its own etcd; the sources hold state in Cilium's format;
// cluster files are added and removed at runtime, a source is killed and restarted, a removed
// cluster drains.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "kvstore/backend.h"
#include "nlohmann/json.hpp"
#include "tests/support/etcd_fixture.h"
#include "tests/tools/running_tool.h"

namespace kvstore::testing {
namespace {

using ::testing::HasSubstr;

// One source cluster: an etcd holding what Cilium's agents and clustermesh-apiserver of cluster
// `name` write there.
struct Source {
  std::string name;
  int id = 0;
  std::unique_ptr<EtcdCluster> etcd;
  std::shared_ptr<Backend> client;

  void Put(const std::string& key, const std::string& value) {
    ASSERT_TRUE(client->Update(Context(), key, value, false).ok()) << key;
  }

  // Nodes, services, identities (the id/ and value/ trees) and ipcache entries, and the config.
  void WriteState(const std::string& capabilities) {
    Put("cilium/cluster-config/" + name,
        R"({"id":)" + std::to_string(id) + R"(,"capabilities":{)" + capabilities + "}}");
    Put("cilium/state/nodes/v1/" + name + "/node-1",
        R"({"name":"node-1","cluster":")" + name + R"("})");
    Put("cilium/state/nodes/v1/" + name + "/node-2",
        R"({"name":"node-2","cluster":")" + name + R"("})");
    Put("cilium/state/services/v1/" + name + "/default/web",
        R"({"cluster":")" + name + R"(","namespace":"default","name":"web"})");
    const std::string identity = std::to_string(id * 65536 + 100);
    Put("cilium/state/identities/v1/id/" + identity, "k8s:app=web;k8s:cluster=" + name + ";");
    Put("cilium/state/identities/v1/value/k8s:app=web;/10.0.0.1", identity);
    Put("cilium/state/ip/v1/default/10.0." + std::to_string(id) + ".1",
        R"({"IP":"10.0.)" + std::to_string(id) + R"(.1","ID":)" + identity + "}");
  }
};

class MeshClustersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = StartEtcd();
    ASSERT_NE(target_, nullptr);
    target_client_ = Connect(*target_);
    ASSERT_NE(target_client_, nullptr);
    for (int i = 1; i <= 3; ++i) {
      auto source = std::make_unique<Source>();
      source->name = "cluster" + std::to_string(i);
      source->id = i;
      source->etcd = StartEtcd();
      ASSERT_NE(source->etcd, nullptr);
      source->client = Connect(*source->etcd);
      ASSERT_NE(source->client, nullptr);
      sources_.push_back(std::move(source));
    }
    dir_ = target_->dir() + "/clustermesh";
    std::filesystem::create_directories(dir_);
  }

  void TearDown() override {
    for (auto& source : sources_) {
      if (source->client) source->client->Close();
    }
    if (target_client_) target_client_->Close();
  }

  // What Cilium mounts per remote cluster: an etcd config named after the cluster.
  void WriteClusterFile(const Source& source) {
    std::ofstream(dir_ + "/" + source.name)
        << "endpoints:\n- http://" << source.etcd->ClientEndpoint(0) << "\n";
  }

  std::vector<std::string> MeshArgs(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--log-level",
                                     "info",
                                     "mesh",
                                     "--clustermesh-config",
                                     dir_,
                                     "--target-endpoints",
                                     target_->ClientEndpoint(0),
                                     "--local-cluster-name",
                                     "local",
                                     "--status-interval",
                                     "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  size_t CountPrefix(const std::string& prefix) {
    auto pairs = target_client_->ListPrefix(Context(), prefix);
    EXPECT_TRUE(pairs.ok()) << pairs.status();
    return pairs.ok() ? pairs->size() : 0;
  }

  // Every key of `source` where the target's agents read it, and its canaries and config.
  void ExpectMirrored(const Source& source) {
    SCOPED_TRACE(source.name);
    const std::string& c = source.name;
    const std::string identity = std::to_string(source.id * 65536 + 100);
    const std::string ip = "10.0." + std::to_string(source.id) + ".1";
    std::vector<std::pair<std::string, std::string>> expected = {
        {"cilium/cache/nodes/v1/" + c + "/node-1", "cilium/state/nodes/v1/" + c + "/node-1"},
        {"cilium/cache/nodes/v1/" + c + "/node-2", "cilium/state/nodes/v1/" + c + "/node-2"},
        {"cilium/cache/services/v1/" + c + "/default/web",
         "cilium/state/services/v1/" + c + "/default/web"},
        {"cilium/cache/identities/v1/" + c + "/id/" + identity,
         "cilium/state/identities/v1/id/" + identity},
        {"cilium/cache/ip/v1/" + c + "/" + ip, "cilium/state/ip/v1/default/" + ip},
    };
    for (const auto& [cached, state] : expected) {
      EXPECT_EQ(GetValue(*target_client_, cached), GetValue(*source.client, state)) << cached;
    }
    // Only the id/ tree of identities is mirrored.
    EXPECT_EQ(CountPrefix("cilium/cache/identities/v1/" + c + "/"), 1u);
    EXPECT_EQ(CountPrefix("cilium/cache/nodes/v1/" + c + "/"), 2u);
    for (const char* kind : {"nodes", "services", "identities", "ip"}) {
      EXPECT_TRUE(HasKey(*target_client_, "cilium/synced/" + c + "/cilium/cache/" + kind + "/v1"))
          << kind;
    }
    std::optional<std::string> config = GetValue(*target_client_, "cilium/cluster-config/" + c);
    ASSERT_TRUE(config.has_value());
    nlohmann::json json = nlohmann::json::parse(*config);
    EXPECT_EQ(json["id"], source.id);
    EXPECT_EQ(json["capabilities"]["syncedCanaries"], true);
    EXPECT_EQ(json["capabilities"]["cached"], true);
  }

  std::unique_ptr<EtcdCluster> target_;
  std::shared_ptr<Backend> target_client_;
  std::vector<std::unique_ptr<Source>> sources_;
  std::string dir_;
};

bool IsReadyStatus(const std::string& line, const std::string& cluster) {
  return line.starts_with("status " + cluster + " ") &&
         line.find("connected=yes ready=yes") != std::string::npos;
}

TEST_F(MeshClustersTest, MirrorsClustersAddedRemovedAndRestartedAtRuntime) {
  Source& c1 = *sources_[0];
  Source& c2 = *sources_[1];
  Source& c3 = *sources_[2];
  c1.WriteState("");
  c2.WriteState(R"("maxConnectedClusters":255)");
  // cluster3 writes its own canaries: it is mirrored prefix by prefix once they appear.
  c3.WriteState(R"("syncedCanaries":true)");
  for (const char* kind : {"nodes", "services", "identities"}) {
    c3.Put("cilium/synced/cluster3/cilium/state/" + std::string(kind) + "/v1",
           "2026-12-03T08:00:00Z");
  }
  WriteClusterFile(c1);
  WriteClusterFile(c2);
  RunningTool mesh(MeshArgs({"--drain-grace-period", "3s", "--heartbeat-interval", "1s",
                             "--metrics-listen", "127.0.0.1:0"}));
  ASSERT_TRUE(mesh.Started());
  ASSERT_TRUE(mesh.AwaitLine([](const std::string& l) { return IsReadyStatus(l, "cluster1"); }))
      << mesh.Transcript();
  ASSERT_TRUE(mesh.AwaitLine([](const std::string& l) { return IsReadyStatus(l, "cluster2"); }))
      << mesh.Transcript();
  EXPECT_TRUE(
      mesh.AwaitLine("synced cilium/state/identities/v1/id -> "
                     "cilium/cache/identities/v1/cluster1/id keys=1"))
      << mesh.Transcript();
  ExpectMirrored(c1);
  ExpectMirrored(c2);
  EXPECT_TRUE(HasKey(*target_client_, "cilium/.heartbeat"));

  std::optional<int> port = MetricsPort(mesh);
  ASSERT_TRUE(port.has_value()) << mesh.Transcript();
  std::vector<Sample> samples = Scrape(*port);
  EXPECT_EQ(
      SampleValue(samples, "cilium_clustermesh_remote_clusters", {"source_cluster=\"local\""}),
      2.0);
  EXPECT_EQ(SampleValue(samples, "cilium_clustermesh_remote_cluster_readiness_status",
                        {"target_cluster=\"cluster1\""}),
            1.0);
  EXPECT_EQ(SampleValue(samples, "cilium_clustermesh_remote_cluster_failures",
                        {"target_cluster=\"cluster2\""}),
            std::nullopt);  // no failure yet: no series

  // A third cluster's file appears: it is mirrored as far as its canaries go.
  WriteClusterFile(c3);
  ASSERT_TRUE(
      mesh.AwaitLine("synced cilium/state/nodes/v1/cluster3 -> "
                     "cilium/cache/nodes/v1/cluster3 keys=2"))
      << mesh.Transcript();
  EXPECT_TRUE(HasKey(*target_client_, "cilium/cluster-config/cluster3"));
  EXPECT_EQ(CountPrefix("cilium/cache/ip/v1/cluster3/"), 0u);  // no canary for ip yet
  c3.Put("cilium/synced/cluster3/cilium/state/ip/v1", "2026-12-03T08:00:01Z");
  ASSERT_TRUE(mesh.AwaitLine([](const std::string& l) { return IsReadyStatus(l, "cluster3"); }))
      << mesh.Transcript();
  ExpectMirrored(c3);

  // cluster2's etcd is killed: meanwhile nothing of it is lost in the target; once it is back,
  // what changed there is mirrored.
  ASSERT_TRUE(c2.etcd->KillMember(0).ok());
  EXPECT_EQ(CountPrefix("cilium/cache/nodes/v1/cluster2/"), 2u);
  ASSERT_TRUE(c2.etcd->StartMember(0).ok());
  ASSERT_TRUE(EventuallyTrue([&] {
    return c2.client->Update(Context(), "cilium/state/nodes/v1/cluster2/node-3", "n3", false).ok();
  }));
  ASSERT_TRUE(c2.client->Delete(Context(), "cilium/state/nodes/v1/cluster2/node-1").ok());
  EXPECT_TRUE(EventuallyTrue([&] {
    return GetValue(*target_client_, "cilium/cache/nodes/v1/cluster2/node-3") == "n3" &&
           !HasKey(*target_client_, "cilium/cache/nodes/v1/cluster2/node-1");
  })) << mesh.Transcript();

  // cluster1's file goes: its config at once, its cache and canaries after the grace period.
  std::filesystem::remove(dir_ + "/cluster1");
  ASSERT_TRUE(mesh.AwaitLine("removed cluster1")) << mesh.Transcript();
  EXPECT_FALSE(HasKey(*target_client_, "cilium/cluster-config/cluster1"));
  ASSERT_TRUE(mesh.AwaitLine("drained cluster1")) << mesh.Transcript();
  for (const char* prefix :
       {"cilium/cache/nodes/v1/cluster1/", "cilium/cache/services/v1/cluster1/",
        "cilium/cache/identities/v1/cluster1/", "cilium/cache/ip/v1/cluster1/",
        "cilium/synced/cluster1/"}) {
    EXPECT_EQ(CountPrefix(prefix), 0u) << prefix;
  }
  // The others are untouched: 2 + 1 + 1 + 1 keys each (cluster2 with node-3 instead of node-1).
  EXPECT_EQ(CountPrefix("cilium/cache/"), 10u);
  EXPECT_TRUE(HasKey(*target_client_, "cilium/cluster-config/cluster2"));
  EXPECT_TRUE(HasKey(*target_client_, "cilium/cluster-config/cluster3"));

  mesh.Signal(SIGTERM);
  EXPECT_EQ(mesh.Wait(), 0) << mesh.Transcript();
}

TEST_F(MeshClustersTest, ReportsStatusInJsonAndAClusterWithoutConfigAsAFailure) {
  Source& c1 = *sources_[0];
  Source& c2 = *sources_[1];
  c1.WriteState("");
  c2.Put("cilium/state/nodes/v1/cluster2/node-1", "{}");  // but no cluster config
  WriteClusterFile(c1);
  WriteClusterFile(c2);
  std::vector<std::string> args = MeshArgs({"-o", "json"});
  // A status line every second too, to see the watches' freshness as it is refreshed.
  *(std::find(args.begin(), args.end(), "--status-interval") + 1) = "1s";
  RunningTool mesh(args);
  ASSERT_TRUE(mesh.Started());
  auto ready = mesh.AwaitLine([](const std::string& l) {
    return l.find(R"("event":"status")") != std::string::npos &&
           l.find(R"("name":"cluster1")") != std::string::npos &&
           l.find(R"("ready":true)") != std::string::npos;
  });
  ASSERT_TRUE(ready.has_value()) << mesh.Transcript();
  nlohmann::json status = nlohmann::json::parse(*ready);
  EXPECT_EQ(status["connected"], true);
  EXPECT_EQ(status["num-nodes"], 2);
  EXPECT_EQ(status["num-shared-services"], 1);
  EXPECT_EQ(status["num-identities"], 1);
  EXPECT_EQ(status["num-endpoints"], 1);
  EXPECT_EQ(status["config"]["cluster-id"], 1);
  EXPECT_EQ(status["synced"]["nodes"], true);
  EXPECT_EQ(status["synced"]["endpoints"], true);

  // How fresh each of the remote's watches is, as its etcd backend tells.
  auto fresh = mesh.AwaitLine([](const std::string& l) {
    return l.find(R"("name":"cluster1")") != std::string::npos &&
           l.find(R"("prefix":"cilium/state/nodes/v1/cluster1/")") != std::string::npos;
  });
  ASSERT_TRUE(fresh.has_value()) << mesh.Transcript();
  nlohmann::json watches = nlohmann::json::parse(*fresh)["watches"];
  ASSERT_TRUE(watches.is_array()) << *fresh;
  for (const nlohmann::json& watch : watches) {
    SCOPED_TRACE(watch.dump());
    EXPECT_TRUE(watch.contains("last-heard"));
    EXPECT_GE(watch["age-seconds"].get<double>(), 0.0);
    EXPECT_GE(watch["list-pages"].get<int>(), 1);
    EXPECT_TRUE(watch["restarts"].is_object());
  }

  auto failed = mesh.AwaitLine([](const std::string& l) {
    return l.find(R"("name":"cluster2")") != std::string::npos &&
           l.find("not found") != std::string::npos;
  });
  ASSERT_TRUE(failed.has_value()) << mesh.Transcript();
  nlohmann::json failure = nlohmann::json::parse(*failed);
  EXPECT_EQ(failure["connected"], false);
  EXPECT_GE(failure["num-failures"], 1);
  EXPECT_THAT(failure["last-error"].get<std::string>(),
              HasSubstr("cilium/cluster-config/cluster2"));
  EXPECT_FALSE(HasKey(*target_client_, "cilium/cache/nodes/v1/cluster2/node-1"));

  // Its config appears: it connects.
  c2.Put("cilium/cluster-config/cluster2", R"({"id":2})");
  EXPECT_TRUE(EventuallyTrue([&] {
    return HasKey(*target_client_, "cilium/cache/nodes/v1/cluster2/node-1");
  })) << mesh.Transcript();
  mesh.Signal(SIGTERM);
  EXPECT_EQ(mesh.Wait(), 0) << mesh.Transcript();
}

}  // namespace
}  // namespace kvstore::testing

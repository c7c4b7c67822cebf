// End to end against real etcd: a SyncStore publishes typed Cilium nodes and identities, a
// WatchStore reads them back with a remote cluster's checks, and `kvstorectl cilium ...` (a
// separate process) lists and checks them, directly and through `kvstorectl mesh`'s cache. Also
// `kvstorectl put KEY` reading its value from standard input.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kvstore/cilium/cilium.h"
#include "kvstore/mesh/cluster_config.h"
#include "kvstore/paths.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "nlohmann/json.hpp"
#include "tests/tools/running_tool.h"
#include "tests/tools/tool_runner.h"

extern char** environ;

namespace kvstore::testing {
namespace {

using ::testing::HasSubstr;
namespace cilium = ::kvstore::cilium;

class NamesObserver : public store::Observer {
 public:
  void OnUpdate(const store::Key& key) override {
    std::lock_guard lock(mu_);
    names_[key.GetKeyName()] = key.Marshal().value_or("");
  }
  void OnDelete(const store::NamedKey& key) override {
    std::lock_guard lock(mu_);
    names_.erase(key.GetKeyName());
  }
  std::map<std::string, std::string> Names() const {
    std::lock_guard lock(mu_);
    return names_;
  }

 private:
  mutable std::mutex mu_;  // guards names_
  std::map<std::string, std::string> names_;
};

cilium::Node MakeNode(const std::string& cluster, uint32_t id, const std::string& name) {
  cilium::Node node;
  node.name = name;
  node.cluster = cluster;
  node.cluster_id = id;
  node.ip_addresses = {{std::string(cilium::kNodeInternalIP), "192.168.0." + std::to_string(id)}};
  node.ipv4_alloc_cidr = *cilium::IPNet::Parse("10.244." + std::to_string(id) + ".0/24");
  node.labels = {{"kubernetes.io/hostname", name}};
  node.source = "kvstore";
  node.boot_id = "boot-" + name;
  return node;
}

cilium::Identity MakeIdentity(uint32_t id, const std::string& app) {
  cilium::Identity identity;
  identity.id = id;
  identity.labels = {{"k8s", "app", app}, {"k8s", "io.kubernetes.pod.namespace", "default"}};
  return identity;
}

// Publishes two nodes and two identities of cluster `cluster` (ID `id`) with SyncStores and
// waits until a checking WatchStore has read them all.
void Publish(Backend& backend, const std::string& cluster, uint32_t id) {
  const Context bg = Context::Background();
  mesh::ClusterConfig config;
  config.id = id;
  ASSERT_TRUE(mesh::SetClusterConfig(bg, backend, cluster, config, false).ok());
  auto [ctx, cancel] = WithCancel(bg);
  std::shared_ptr<Backend> shared(&backend, [](Backend*) {});
  store::WorkqueueSyncStoreOptions unleased;
  unleased.with_lease = false;
  auto nodes =
      store::NewWorkqueueSyncStore(cluster, shared, std::string(cilium::kNodesPrefix), unleased);
  auto identities = store::NewWorkqueueSyncStore(cluster, shared,
                                                 std::string(cilium::kIdentitiesPrefix), unleased);
  std::thread nodes_thread([&, ctx = ctx] { nodes->Run(ctx); });
  std::thread identities_thread([&, ctx = ctx] { identities->Run(ctx); });
  for (const char* name : {"node-1", "node-2"}) {
    ASSERT_TRUE(nodes->UpsertKey(ctx, MakeNode(cluster, id, name)).ok());
  }
  ASSERT_TRUE(identities->UpsertKey(ctx, MakeIdentity(id * 65536 + 100, "web")).ok());
  ASSERT_TRUE(identities->UpsertKey(ctx, MakeIdentity(id * 65536 + 101, "db")).ok());

  const cilium::ClusterInfo info{cluster, id, 0};
  auto observer = std::make_shared<NamesObserver>();
  auto reader = store::NewRestartableWatchStore(
      cluster, cilium::ValidatingCreator<cilium::Node>(info), observer);
  std::thread watch(
      [&, ctx = ctx] { reader->Watch(ctx, backend, JoinPath(cilium::kNodesPrefix, cluster)); });
  auto id_observer = std::make_shared<NamesObserver>();
  auto id_reader = store::NewRestartableWatchStore(
      cluster, cilium::ValidatingCreator<cilium::Identity>(info), id_observer);
  std::thread id_watch([&, ctx = ctx] {
    id_reader->Watch(ctx, backend, JoinPath(cilium::kIdentitiesPrefix, "id"));
  });
  EXPECT_TRUE(EventuallyTrue([&] { return observer->Names().size() == 2; }));
  EXPECT_EQ(observer->Names()[cluster + "/node-1"], *MakeNode(cluster, id, "node-1").Marshal());
  EXPECT_TRUE(EventuallyTrue([&] { return id_observer->Names().size() == 2; }));
  EXPECT_EQ(id_observer->Names()["id/" + std::to_string(id * 65536 + 100)],
            "k8s:app=web;k8s:io.kubernetes.pod.namespace=default;");
  cancel();
  nodes_thread.join();
  identities_thread.join();
  watch.join();
  id_watch.join();
}

std::string LastLine(const std::string& text) {
  std::vector<std::string> lines = Lines(text);
  return lines.empty() ? "" : lines.back();
}

TEST(CiliumToolTest, ListsAndChecksWhatTypedStoresPublished) {
  auto etcd = StartEtcd();
  ASSERT_NE(etcd, nullptr);
  auto backend = Connect(*etcd);
  ASSERT_NE(backend, nullptr);
  Publish(*backend, "c1", 1);
  const std::string endpoint = etcd->ClientEndpoint(0);

  ToolRun table = RunKvstorectl({"--endpoints", endpoint, "cilium", "nodes"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("CLUSTER"));
  EXPECT_THAT(table.out, HasSubstr("node-1"));
  EXPECT_THAT(table.out, HasSubstr("10.244.1.0/24"));
  EXPECT_EQ(Lines(table.out).size(), 3u);

  ToolRun json = RunKvstorectl({"--endpoints", endpoint, "cilium", "nodes", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  nlohmann::json nodes = nlohmann::json::parse(json.out);
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0]["Name"], "node-1");
  EXPECT_EQ(nodes[0]["ClusterID"], 1);
  EXPECT_EQ(nodes[1]["IPAddresses"][0]["IP"], "192.168.0.1");

  ToolRun ids = RunKvstorectl(
      {"--endpoints", endpoint, "cilium", "identities", "--cluster", "c1", "-o", "json"});
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  nlohmann::json identities = nlohmann::json::parse(ids.out);
  ASSERT_EQ(identities.size(), 2u);
  EXPECT_EQ(identities[0]["id"], 65636);
  EXPECT_EQ(identities[0]["labels"][0], "k8s:app=web");

  ToolRun check = RunKvstorectl({"--endpoints", endpoint, "cilium", "check"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_EQ(LastLine(check.out), "checked 4 values, 0 problems, 0 encoded differently")
      << check.out;

  // watch shows the values of Cilium's kinds decoded.
  ToolRun watch = RunKvstorectl(
      {"--endpoints", endpoint, "watch", "cilium/state/nodes/v1", "--timeout", "1", "-o", "json"});
  ASSERT_EQ(watch.exit_code, 0) << watch.err;
  std::vector<std::string> events = Lines(watch.out);
  ASSERT_GE(events.size(), 2u) << watch.out;
  nlohmann::json first = nlohmann::json::parse(events[0]);
  EXPECT_EQ(first["decoded"]["Name"], "node-1") << events[0];
  EXPECT_EQ(first["decoded"]["ClusterID"], 1) << events[0];

  // A node claiming another cluster ID, one in another version's encoding, an identity out of
  // the cluster's range, and a value that is not JSON.
  const Context bg = Context::Background();
  cilium::Node wrong_id = MakeNode("c1", 2, "wrong-id");
  ASSERT_TRUE(
      backend->Update(bg, "cilium/state/nodes/v1/c1/wrong-id", *wrong_id.Marshal(), false).ok());
  std::string other = *MakeNode("c1", 1, "other").Marshal();
  other.insert(other.size() - 1, R"(,"FutureField":true)");
  ASSERT_TRUE(backend->Update(bg, "cilium/state/nodes/v1/c1/other", other, false).ok());
  ASSERT_TRUE(backend->Update(bg, "cilium/state/identities/v1/id/5000000", "k8s:a=b;", false).ok());
  ASSERT_TRUE(backend->Update(bg, "cilium/state/services/v1/c1/default/web", "{", false).ok());
  // A node's reference to an identity (value/ key): checked too.
  ASSERT_TRUE(backend
                  ->Update(bg,
                           "cilium/state/identities/v1/value/"
                           "k8s:app=web;k8s:io.kubernetes.pod.namespace=default;/192.168.0.1",
                           "65636", false)
                  .ok());

  check = RunKvstorectl({"--endpoints", endpoint, "cilium", "check", "--cluster", "c1"});
  EXPECT_EQ(check.exit_code, 1) << check.out << check.err;
  EXPECT_THAT(check.out,
              HasSubstr("problem: key \"cilium/state/nodes/v1/c1/wrong-id\": field ClusterID"));
  EXPECT_THAT(check.out,
              HasSubstr("problem: key \"cilium/state/identities/v1/id/5000000\": field ID"));
  EXPECT_THAT(check.out, HasSubstr("problem: key \"cilium/state/services/v1/c1/default/web\""));
  EXPECT_THAT(check.out, HasSubstr("note: cilium/state/nodes/v1/c1/other: encoded differently"));
  EXPECT_EQ(LastLine(check.out), "checked 9 values, 3 problems, 1 encoded differently")
      << check.out;
  backend->Close();
}

TEST(CiliumToolTest, ReadsAClusterThroughKvstoremeshsCache) {
  auto source = StartEtcd();
  auto target = StartEtcd();
  ASSERT_NE(source, nullptr);
  ASSERT_NE(target, nullptr);
  auto source_backend = Connect(*source);
  ASSERT_NE(source_backend, nullptr);
  Publish(*source_backend, "c7", 7);

  RunningTool mesh({"--log-level", "info", "mesh", "--cluster-name", "c7", "--source-endpoints",
                    source->ClientEndpoint(0), "--target-endpoints", target->ClientEndpoint(0),
                    "--status-interval", "0"});
  ASSERT_TRUE(mesh.Started());
  ASSERT_TRUE(mesh.AwaitLine("synced cilium/state/nodes/v1/c7 -> cilium/cache/nodes/v1/c7 keys=2"))
      << mesh.Transcript();
  ASSERT_TRUE(
      mesh.AwaitLine("synced cilium/state/identities/v1/id -> "
                     "cilium/cache/identities/v1/c7/id keys=2"))
      << mesh.Transcript();

  const std::string endpoint = target->ClientEndpoint(0);
  ToolRun json =
      RunKvstorectl({"--endpoints", endpoint, "cilium", "nodes", "--cluster", "c7", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  nlohmann::json nodes = nlohmann::json::parse(json.out);
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0]["Cluster"], "c7");
  ToolRun table = RunKvstorectl({"--endpoints", endpoint, "cilium", "identities"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("458852"));
  EXPECT_THAT(table.out, HasSubstr("cache"));
  ToolRun check = RunKvstorectl({"--endpoints", endpoint, "cilium", "check", "--cluster", "c7"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_EQ(LastLine(check.out), "checked 4 values, 0 problems, 0 encoded differently")
      << check.out;
  mesh.Signal(SIGTERM);
  EXPECT_TRUE(mesh.Wait().has_value());
  source_backend->Close();
}

// Runs kvstorectl with `input` on its standard input; returns its exit code.
int RunWithInput(const std::vector<std::string>& args, const std::string& input) {
  char path[] = "/tmp/kvstorectl_stdin_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return -1;
  const bool written =
      ::write(fd, input.data(), input.size()) == static_cast<ssize_t>(input.size());
  ::close(fd);
  if (!written) return -1;
  std::vector<std::string> full = {KVSTORECTL_PATH};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : full) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, path, O_RDONLY, 0);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  const bool waited = spawned == 0 && waitpid(pid, &status, 0) == pid;
  std::remove(path);
  if (!waited || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(PutFromStdinTest, WritesAValueLargerThanTheArgumentLimit) {
  auto etcd = StartEtcd();
  ASSERT_NE(etcd, nullptr);
  // 300 KiB with every byte value: over the kernel's 128 KiB limit for one argument.
  std::string value;
  for (size_t i = 0; i < 300 * 1024; ++i) value.push_back(static_cast<char>(i * 7 % 256));
  ASSERT_EQ(RunWithInput({"--endpoints", etcd->ClientEndpoint(0), "put", "big/key"}, value), 0);
  auto backend = Connect(*etcd);
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(GetValue(*backend, "big/key"), value);
  // An empty standard input writes an empty value; an argument still wins over the input.
  ASSERT_EQ(RunWithInput({"--endpoints", etcd->ClientEndpoint(0), "put", "empty/key"}, ""), 0);
  EXPECT_EQ(GetValue(*backend, "empty/key"), "");
  ASSERT_EQ(RunWithInput({"--endpoints", etcd->ClientEndpoint(0), "put", "arg/key", "v"}, "x"), 0);
  EXPECT_EQ(GetValue(*backend, "arg/key"), "v");
  backend->Close();
}

}  // namespace
}  // namespace kvstore::testing

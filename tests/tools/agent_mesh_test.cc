// End-to-end tests of `kvstorectl agent`, `mesh` and `bench`: the built binary runs against real
// etcd members started by the fixture, is watched through its stdout and stderr, and is stopped
// with SIGTERM as a user would.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kvstore/backend.h"
#include "kvstore/etcd/etcd_backend.h"
#include "nlohmann/json.hpp"
#include "tests/support/etcd_fixture.h"
#include "tests/tools/running_tool.h"
#include "tests/tools/tool_runner.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

using RunningTool = ::kvstore::testing::RunningTool;

constexpr auto kTimeout = kToolTimeout;

// --- agent --------------------------------------------------------------------------------------

constexpr char kAgentPrefix[] = "cilium/state/agents/v1";

std::vector<std::string> AgentArgs(const EtcdCluster& etcd, const std::string& name,
                                   std::vector<std::string> extra) {
  std::vector<std::string> args = {
      "--log-level", "info", "agent",    "--endpoints", etcd.ClientEndpoint(0),
      "--name",      name,   "--prefix", kAgentPrefix};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(AgentTest, TwoAgentsSeeEachOtherAndTakeTheirKeysAlongWhenTheyLeave) {
  auto etcd = StartEtcd();
  ASSERT_NE(etcd, nullptr);
  auto client = Connect(*etcd);
  ASSERT_NE(client, nullptr);

  RunningTool alice(AgentArgs(*etcd, "alice",
                              {"--key", "alice/ip", "--value", "10.0.0.1", "-o", "json",
                               "--metrics-listen", "127.0.0.1:0"}));
  RunningTool bob(AgentArgs(*etcd, "bob", {"--key", "bob/ip", "--value", "10.0.0.2"}));
  ASSERT_TRUE(alice.Started() && bob.Started());

  auto is_json_event = [](const std::string& event, const std::string& key,
                          std::optional<std::string> value = std::nullopt) {
    return [=](const std::string& line) {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || j.value("agent", "") != "alice" || j.value("event", "") != event ||
          j.value("key", "") != key) {
        return false;
      }
      return !value || j.value("value", "") == *value;
    };
  };
  // Each sees its own key and the other's.
  EXPECT_TRUE(alice.AwaitLine(is_json_event("update", "bob/ip", "10.0.0.2"))) << alice.Transcript();
  EXPECT_TRUE(alice.AwaitLine(is_json_event("update", "alice/ip", "10.0.0.1")))
      << alice.Transcript();
  EXPECT_TRUE(bob.AwaitLine("update alice/ip 10.0.0.1")) << bob.Transcript();
  EXPECT_TRUE(bob.AwaitLine("update bob/ip 10.0.0.2")) << bob.Transcript();
  EXPECT_EQ(GetValue(*client, std::string(kAgentPrefix) + "/alice/ip"), "10.0.0.1");

  // A key deleted from outside is written again by its owner.
  ASSERT_TRUE(client->Delete(Context::Background(), std::string(kAgentPrefix) + "/bob/ip").ok());
  EXPECT_TRUE(alice.AwaitLine(is_json_event("delete", "bob/ip"))) << alice.Transcript();
  EXPECT_TRUE(EventuallyTrue([&] {
    return HasKey(*client, std::string(kAgentPrefix) + "/bob/ip");
  })) << bob.Transcript();

  // The agent's metrics endpoint serves the store metrics.
  std::optional<int> port = MetricsPort(alice);
  ASSERT_TRUE(port.has_value()) << alice.Transcript();
  std::vector<Sample> samples = Scrape(*port);
  auto is_publish_count = [](const Sample& sample) {
    return sample.name == "cilium_kvstore_operations_duration_seconds_count" &&
           sample.labels.find("scope=\"agents/v1\"") != std::string::npos &&
           sample.labels.find("outcome=\"success\"") != std::string::npos &&
           sample.labels.find("kind=\"set\"") != std::string::npos;
  };
  auto publish = std::find_if(samples.begin(), samples.end(), is_publish_count);
  ASSERT_NE(publish, samples.end()) << "no successful writes recorded";
  EXPECT_GE(publish->value, 1.0);
  // Alice saw both keys arrive through her watch, and holds one session lease.
  std::optional<double> created = SampleValue(samples, "cilium_kvstore_events_queue_seconds_count",
                                              {"scope=\"agents/v1\"", "action=\"create\""});
  ASSERT_TRUE(created.has_value()) << "no watch events recorded";
  EXPECT_GE(*created, 2.0);
  EXPECT_EQ(SampleValue(samples, "cilium_kvstore_leases", {}), 1.0);

  // Bob leaves: his key disappears from etcd and for Alice (her second delete of it; the first
  // was the outside delete above).
  bob.Signal(SIGTERM);
  EXPECT_EQ(bob.Wait(), 0) << bob.Transcript();
  EXPECT_FALSE(HasKey(*client, std::string(kAgentPrefix) + "/bob/ip"));
  EXPECT_TRUE(EventuallyTrue([&] {
    return alice.CountLines(is_json_event("delete", "bob/ip")) == 2;
  })) << alice.Transcript();
  EXPECT_TRUE(HasKey(*client, std::string(kAgentPrefix) + "/alice/ip"));

  alice.Signal(SIGTERM);
  EXPECT_EQ(alice.Wait(), 0) << alice.Transcript();
  EXPECT_FALSE(HasKey(*client, std::string(kAgentPrefix) + "/alice/ip"));
}

// An agent killed with SIGKILL cannot leave: the others keep its key until its lease runs out,
// then see it deleted once.
TEST(AgentTest, KilledAgentsKeysExpireWithItsLease) {
  constexpr auto kTtl = 3s;
  auto etcd = StartEtcd();
  ASSERT_NE(etcd, nullptr);
  auto client = Connect(*etcd);
  ASSERT_NE(client, nullptr);
  RunningTool carol(AgentArgs(
      *etcd, "carol",
      {"--key", "carol/ip", "--value", "10.0.0.3", "--lease-ttl", std::to_string(kTtl.count())}));
  RunningTool dave(AgentArgs(*etcd, "dave", {"--key", "dave/ip", "--value", "10.0.0.4"}));
  ASSERT_TRUE(carol.Started() && dave.Started());
  ASSERT_TRUE(dave.AwaitLine("update carol/ip 10.0.0.3")) << dave.Transcript();
  ASSERT_TRUE(carol.AwaitLine("update dave/ip 10.0.0.4")) << carol.Transcript();

  const auto killed = std::chrono::steady_clock::now();
  carol.Signal(SIGKILL);
  EXPECT_FALSE(carol.Wait().has_value()) << "killed, not exited";
  ASSERT_TRUE(dave.AwaitLine("delete carol/ip", kTtl + kTimeout)) << dave.Transcript();
  // The last keep-alive was at most a third of the TTL before the kill.
  EXPECT_GE(std::chrono::steady_clock::now() - killed, kTtl * 2 / 3 - 200ms);
  EXPECT_FALSE(HasKey(*client, std::string(kAgentPrefix) + "/carol/ip"));
  EXPECT_TRUE(HasKey(*client, std::string(kAgentPrefix) + "/dave/ip"));
  EXPECT_EQ(dave.CountLines([](const std::string& line) { return line == "delete carol/ip"; }), 1u);

  dave.Signal(SIGTERM);
  EXPECT_EQ(dave.Wait(), 0) << dave.Transcript();
}

TEST(AgentTest, PublishesValueFilesBytesAsTheyAre) {
  auto etcd = StartEtcd();
  ASSERT_NE(etcd, nullptr);
  auto client = Connect(*etcd);
  ASSERT_NE(client, nullptr);
  std::string file = etcd->dir() + "/value.bin";
  {
    std::FILE* f = std::fopen(file.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("line one\nline two\n", f);
    std::fclose(f);
  }
  RunningTool agent(AgentArgs(*etcd, "carol", {"--key", "carol/config", "--value-file", file}));
  ASSERT_TRUE(agent.Started());
  // Text output keeps one record on one line.
  EXPECT_TRUE(agent.AwaitLine("update carol/config line one\\x0aline two\\x0a"))
      << agent.Transcript();
  EXPECT_EQ(GetValue(*client, std::string(kAgentPrefix) + "/carol/config"), "line one\nline two\n");
  agent.Signal(SIGINT);
  EXPECT_EQ(agent.Wait(), 0) << agent.Transcript();
  EXPECT_FALSE(HasKey(*client, std::string(kAgentPrefix) + "/carol/config"));
}

TEST(AgentTest, FailsOnAValueEtcdRefusesAndLeavesNothingBehind) {
  auto etcd = StartEtcd();
  ASSERT_NE(etcd, nullptr);
  auto client = Connect(*etcd);
  ASSERT_NE(client, nullptr);
  std::string file = etcd->dir() + "/big.bin";
  {
    std::FILE* f = std::fopen(file.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::string big(kMaxValueBytes + 1024, 'x');
    std::fwrite(big.data(), 1, big.size(), f);
    std::fclose(f);
  }
  ToolRun run = RunKvstorectl(AgentArgs(
      *etcd, "dave",
      {"--key", "dave/small", "--value", "1", "--key", "dave/big", "--value-file", file}));
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_THAT(run.err, HasSubstr("publishing dave/big"));
  EXPECT_FALSE(HasKey(*client, std::string(kAgentPrefix) + "/dave/small"));
  EXPECT_FALSE(HasKey(*client, std::string(kAgentPrefix) + "/dave/big"));
}

// --- mesh ---------------------------------------------------------------------------------------

// Two etcds, the source and the target cluster of a mesh, with a client to each.
class MeshTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = StartEtcd();
    target_ = StartEtcd();
    ASSERT_NE(source_, nullptr);
    ASSERT_NE(target_, nullptr);
    source_client_ = Connect(*source_);
    target_client_ = Connect(*target_);
    ASSERT_NE(source_client_, nullptr);
    ASSERT_NE(target_client_, nullptr);
  }

  std::unique_ptr<EtcdCluster> source_, target_;
  std::shared_ptr<Backend> source_client_, target_client_;  // closed before the clusters stop
};

TEST_F(MeshTest, MirrorsIntoTheCacheAndSurvivesRestartsOfBothSides) {
  const Context bg;

  const std::string nodes = "cilium/state/nodes/v1/C/";
  const std::string cached = "cilium/cache/nodes/v1/C/";
  ASSERT_TRUE(source_client_->Update(bg, nodes + "node1", "v1", false).ok());
  ASSERT_TRUE(source_client_->Update(bg, nodes + "node2", "v2", false).ok());
  // Another cluster's key is not this mirror's business.
  ASSERT_TRUE(source_client_->Update(bg, "cilium/state/nodes/v1/D/other", "x", false).ok());

  RunningTool mesh({"--log-level", "info", "mesh", "--source-endpoints", source_->ClientEndpoint(0),
                    "--target-endpoints", target_->ClientEndpoint(0), "--cluster-name", "C",
                    "--prefix", "cilium/state/nodes/v1", "--prefix", "cilium/state/services/v1",
                    "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(mesh.Started());
  EXPECT_TRUE(mesh.AwaitLine("synced cilium/state/nodes/v1/C -> cilium/cache/nodes/v1/C keys=2"))
      << mesh.Transcript();
  EXPECT_TRUE(
      mesh.AwaitLine("synced cilium/state/services/v1/C -> cilium/cache/services/v1/C keys=0"))
      << mesh.Transcript();

  // The first list is mirrored before the canaries are written.
  EXPECT_EQ(GetValue(*target_client_, cached + "node1"), "v1");
  EXPECT_EQ(GetValue(*target_client_, cached + "node2"), "v2");
  EXPECT_TRUE(HasKey(*target_client_, "cilium/synced/C/cilium/cache/nodes/v1"));
  EXPECT_TRUE(HasKey(*target_client_, "cilium/synced/C/cilium/cache/services/v1"));
  auto cache = target_client_->ListPrefix(bg, "cilium/cache/");
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ(cache->size(), 2u);

  // Metrics of the mirror's stores are served.
  std::optional<int> port = MetricsPort(mesh);
  ASSERT_TRUE(port.has_value()) << mesh.Transcript();
  std::vector<Sample> samples = Scrape(*port);
  auto sample_value = [&](const std::string& name, const std::vector<std::string>& labels) {
    for (const Sample& sample : samples) {
      if (sample.name != name) continue;
      bool all = true;
      for (const auto& label : labels) all = all && sample.labels.find(label) != std::string::npos;
      if (all) return std::optional<double>(sample.value);
    }
    return std::optional<double>();
  };
  EXPECT_EQ(sample_value("cilium_kvstore_initial_sync_completed",
                         {"scope=\"nodes/v1\"", "source_cluster=\"C\"", "action=\"write\""}),
            1.0);
  EXPECT_EQ(sample_value("cilium_kvstore_initial_sync_completed",
                         {"scope=\"nodes/v1\"", "source_cluster=\"C\"", "action=\"read\""}),
            1.0);

  // Live changes and deletes are mirrored.
  ASSERT_TRUE(source_client_->Update(bg, nodes + "node1", "v1b", false).ok());
  ASSERT_TRUE(source_client_->Update(bg, nodes + "node3", "v3", false).ok());
  ASSERT_TRUE(source_client_->Delete(bg, nodes + "node2").ok());
  EXPECT_TRUE(EventuallyTrue([&] {
    return GetValue(*target_client_, cached + "node1") == "v1b" &&
           HasKey(*target_client_, cached + "node3") && !HasKey(*target_client_, cached + "node2");
  })) << mesh.Transcript();

  // The source restarts: the mirror goes on.
  ASSERT_TRUE(source_->StopMember(0).ok());
  ASSERT_TRUE(source_->StartMember(0).ok());
  EXPECT_TRUE(EventuallyTrue(
      [&] { return source_client_->Update(bg, nodes + "node4", "v4", false).ok(); }));
  ASSERT_TRUE(source_client_->Delete(bg, nodes + "node3").ok());
  EXPECT_TRUE(EventuallyTrue([&] {
    return GetValue(*target_client_, cached + "node4") == "v4" &&
           !HasKey(*target_client_, cached + "node3");
  })) << mesh.Transcript();

  // The target restarts: the mirror goes on.
  ASSERT_TRUE(target_->StopMember(0).ok());
  ASSERT_TRUE(target_->StartMember(0).ok());
  ASSERT_TRUE(source_client_->Update(bg, nodes + "node5", "v5", false).ok());
  EXPECT_TRUE(EventuallyTrue([&] { return GetValue(*target_client_, cached + "node5") == "v5"; }))
      << mesh.Transcript();
  EXPECT_EQ(GetValue(*target_client_, cached + "node1"), "v1b");
  EXPECT_FALSE(HasKey(*target_client_, "cilium/cache/nodes/v1/C/D/other"));
  EXPECT_FALSE(HasKey(*target_client_, "cilium/cache/nodes/v1/D/other"));

  mesh.Signal(SIGTERM);
  EXPECT_EQ(mesh.Wait(), 0) << mesh.Transcript();
}

TEST_F(MeshTest, DeletesKeysThatVanishedWhileTheSourceWasUnreachable) {
  const Context bg;
  const std::string nodes = "cilium/state/nodes/v1/C/";
  const std::string cached = "cilium/cache/nodes/v1/C/";
  ASSERT_TRUE(source_client_->Update(bg, nodes + "stays", "1", false).ok());
  ASSERT_TRUE(source_client_->Update(bg, nodes + "vanishes", "1", false).ok());

  auto port = source_->ClientEndpoint(0).substr(source_->ClientEndpoint(0).rfind(':') + 1);
  TcpProxy proxy(std::stoi(port));
  RunningTool mesh({"--log-level", "info", "mesh", "--source-endpoints", proxy.Endpoint(),
                    "--target-endpoints", target_->ClientEndpoint(0), "--cluster-name", "C",
                    "--prefix", "cilium/state/nodes/v1"});
  ASSERT_TRUE(mesh.Started());
  ASSERT_TRUE(mesh.AwaitLine("synced cilium/state/nodes/v1/C -> cilium/cache/nodes/v1/C keys=2"))
      << mesh.Transcript();

  // While the mesh cannot reach the source_, a key goes away and the history is compacted: the
  // mirror learns of it only by listing again.
  proxy.Cut();
  ASSERT_TRUE(source_client_->Delete(bg, nodes + "vanishes").ok());
  ASSERT_TRUE(source_client_->Update(bg, nodes + "appears", "1", false).ok());
  ASSERT_TRUE(source_->Compact().ok());
  proxy.Restore();

  EXPECT_TRUE(EventuallyTrue([&] {
    return !HasKey(*target_client_, cached + "vanishes") &&
           HasKey(*target_client_, cached + "appears");
  })) << mesh.Transcript();
  EXPECT_TRUE(HasKey(*target_client_, cached + "stays"));
  mesh.Signal(SIGTERM);
  EXPECT_EQ(mesh.Wait(), 0) << mesh.Transcript();
}

TEST_F(MeshTest, ReportsSyncInJson) {
  ASSERT_TRUE(
      source_client_->Update(Context(), "cilium/state/identities/v1/id/1234", "labels", false)
          .ok());
  RunningTool mesh({"mesh", "--source-endpoints", source_->ClientEndpoint(0), "--target-endpoints",
                    target_->ClientEndpoint(0), "--cluster-name", "C", "--prefix",
                    "cilium/state/identities/v1=cilium/state/identities/v1/id", "-o", "json"});
  ASSERT_TRUE(mesh.Started());
  auto line = mesh.AwaitLine([](const std::string& l) { return l.starts_with("{"); });
  ASSERT_TRUE(line.has_value()) << mesh.Transcript();
  auto j = nlohmann::json::parse(*line);
  EXPECT_EQ(j["event"], "synced");
  EXPECT_EQ(j["source"], "cilium/state/identities/v1/id");
  EXPECT_EQ(j["target"], "cilium/cache/identities/v1/C");
  EXPECT_EQ(j["canary"], "cilium/synced/C/cilium/cache/identities/v1");
  EXPECT_EQ(j["keys"], 1);
  EXPECT_EQ(GetValue(*target_client_, "cilium/cache/identities/v1/C/1234"), "labels");
  mesh.Signal(SIGTERM);
  EXPECT_EQ(mesh.Wait(), 0) << mesh.Transcript();
}

TEST_F(MeshTest, WaitsForTheSourceCanaryWhenAsked) {
  const Context bg;
  ASSERT_TRUE(
      source_client_->Update(bg, "cilium/state/services/v1/C/default/web", "1", false).ok());
  ASSERT_TRUE(source_client_->Update(bg, "cilium/state/nodes/v1/C/node1", "1", false).ok());
  RunningTool mesh({"mesh", "--source-endpoints", source_->ClientEndpoint(0), "--target-endpoints",
                    target_->ClientEndpoint(0), "--cluster-name", "C", "--prefix",
                    "cilium/state/services/v1", "--prefix", "cilium/state/nodes/v1",
                    "--wait-source-synced"});
  ASSERT_TRUE(mesh.Started());

  // Only the prefix whose source canary exists is mirrored.
  ASSERT_TRUE(
      source_client_->Update(bg, "cilium/synced/C/cilium/state/services/v1", "now", false).ok());
  EXPECT_TRUE(
      mesh.AwaitLine("synced cilium/state/services/v1/C -> cilium/cache/services/v1/C keys=1"))
      << mesh.Transcript();
  EXPECT_EQ(GetValue(*target_client_, "cilium/cache/services/v1/C/default/web"), "1");
  EXPECT_FALSE(HasKey(*target_client_, "cilium/cache/nodes/v1/C/node1"));
  EXPECT_FALSE(HasKey(*target_client_, "cilium/synced/C/cilium/cache/nodes/v1"));

  ASSERT_TRUE(
      source_client_->Update(bg, "cilium/synced/C/cilium/state/nodes/v1", "now", false).ok());
  EXPECT_TRUE(mesh.AwaitLine("synced cilium/state/nodes/v1/C -> cilium/cache/nodes/v1/C keys=1"))
      << mesh.Transcript();
  EXPECT_EQ(GetValue(*target_client_, "cilium/cache/nodes/v1/C/node1"), "1");
  mesh.Signal(SIGTERM);
  EXPECT_EQ(mesh.Wait(), 0) << mesh.Transcript();
}

// --- usage errors -------------------------------------------------------------------------------

struct BadUsage {
  std::vector<std::string> args;
  std::string message;
};

// --- bench ---------------------------------------------------------------------------------------

// `kvstorectl bench raw` against etcd, blocking and asynchronous: every key is written and
// verified.
TEST(BenchOnEtcdTest, RawBlockingAndAsyncWriteEveryKey) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> etcd = EtcdCluster::Start();
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  for (const bool async : {false, true}) {
    std::vector<std::string> args = {"bench",         "raw",
                                     "--endpoints",   (*etcd)->ClientEndpoint(0),
                                     "--keys",        "3000",
                                     "--concurrency", "64",
                                     "--prefix",      async ? "bench/async" : "bench/blocking",
                                     "--quiet"};
    if (async) args.push_back("--async");
    ToolRun run = RunKvstorectl(args);
    ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
    std::vector<std::string> lines = Lines(run.out);
    ASSERT_FALSE(lines.empty()) << run.err;
    const std::string& result = lines.back();
    EXPECT_THAT(result, HasSubstr("workload=raw keys=3000 ")) << result;
    EXPECT_THAT(result, HasSubstr(" verified=true")) << result;
    EXPECT_THAT(result, HasSubstr(" backend=etcd")) << result;
    EXPECT_EQ(result.find(" async=1") != std::string::npos, async) << result;
  }
}

TEST(UsageTest, BadFlagsGiveAClearErrorAndExitCode2) {
  const std::vector<BadUsage> cases = {
      {{"agent", "--prefix", "p"}, "--name is required"},
      {{"agent", "--name", "a"}, "--prefix is required"},
      {{"agent", "--name", "a", "--prefix", "p", "--value", "x"}, "must follow a --key"},
      {{"agent", "--name", "a", "--prefix", "p", "--key", "k"}, "needs a --value or --value-file"},
      {{"agent", "--name", "a", "--prefix", "p", "--key", "k", "--value", "1", "--key", "k",
        "--value", "2"},
       "given twice"},
      {{"agent", "--name", "a", "--prefix", "p", "--key", "/k", "--value", "1"},
       "invalid key name"},
      {{"agent", "--name", "a", "--prefix", "p", "--metrics-listen", "nowhere"},
       "invalid listen address"},
      {{"agent", "--name", "a", "--prefix", "p", "--no-such-flag"}, "--no-such-flag"},
      {{"agent", "--name", "a", "--prefix", "p", "--lease-ttl", "-1"}, "--lease-ttl"},
      {{"mesh", "--cluster-name", "C", "--prefix", "cilium/state/nodes/v1", "--target-endpoints",
        "127.0.0.1:1"},
       "mesh needs a source"},
      {{"mesh", "--cluster-name", "C", "--prefix", "cilium/state/nodes/v1", "--source-endpoints",
        "127.0.0.1:1"},
       "mesh needs a target"},
      {{"mesh", "--cluster-name", "C", "--prefix", "other/nodes", "--source-endpoints",
        "127.0.0.1:1", "--target-endpoints", "127.0.0.1:2"},
       "is not under cilium/state/"},
      {{"mesh", "--cluster-name", "a/b", "--prefix", "cilium/state/nodes/v1", "--source-endpoints",
        "127.0.0.1:1", "--target-endpoints", "127.0.0.1:2"},
       "--cluster-name"},
      {{"mesh", "--prefix", "cilium/state/nodes/v1", "--source-endpoints", "127.0.0.1:1",
        "--target-endpoints", "127.0.0.1:2"},
       "--cluster-name is required"},
      {{"mesh", "--endpoints", "127.0.0.1:1", "--cluster-name", "C", "--prefix",
        "cilium/state/nodes/v1", "--source-endpoints", "127.0.0.1:1", "--target-endpoints",
        "127.0.0.1:2"},
       "do not apply"},
      {{"mesh", "--cluster-name", "C", "--prefix", "cilium/state/nodes/v1", "--source-etcd-config",
        "/nonexistent/etcd.yaml", "--target-endpoints", "127.0.0.1:2"},
       "/nonexistent/etcd.yaml"},
  };
  for (const BadUsage& usage : cases) {
    ToolRun run = RunKvstorectl(usage.args);
    std::string command = ::testing::PrintToString(usage.args);
    EXPECT_EQ(run.exit_code, 2) << command << "\n" << run.err;
    EXPECT_THAT(run.err, HasSubstr(usage.message)) << command;
    EXPECT_EQ(run.out, "") << command;
  }
}

}  // namespace
}  // namespace kvstore::testing

// /healthz and /readyz of `kvstorectl agent` and `kvstorectl mesh` (--metrics-listen), end to
// end: the tool runs as a separate process against real etcd members, and the endpoints are read
// with curl, as a Kubernetes probe or an operator would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstore/backend.h"
#include "tests/support/etcd_fixture.h"
#include "tests/tools/running_tool.h"

namespace kvstore::testing {
namespace {

using ::testing::HasSubstr;

struct HttpResponse {
  int code = 0;  // 0: no answer
  std::string body;
};

// GET http://127.0.0.1:PORT/PATH with curl; the status code and the body.
HttpResponse HttpGet(int port, const std::string& path) {
  CommandResult result = RunCommand({"curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}",
                                     "http://127.0.0.1:" + std::to_string(port) + path});
  HttpResponse response;
  if (result.exit_code != 0) {
    response.body = result.output;
    return response;
  }
  const size_t last = result.output.rfind('\n');
  if (last == std::string::npos) return response;
  try {
    response.code = std::stoi(result.output.substr(last + 1));
  } catch (const std::exception&) {
    return response;
  }
  response.body = result.output.substr(0, last);
  return response;
}

// Polls `path` until it answers `code` with `text` in the body; that answer, or the last one.
HttpResponse Await(int port, const std::string& path, int code, const std::string& text = "") {
  HttpResponse last;
  EventuallyTrue([&] {
    last = HttpGet(port, path);
    return last.code == code && last.body.find(text) != std::string::npos;
  });
  return last;
}

TEST(AgentHealthTest, ReadyOnceJoinedAndItsKeysWritten) {
  std::unique_ptr<EtcdCluster> etcd = StartEtcd();
  ASSERT_NE(etcd, nullptr);
  // With its etcd down the agent cannot join: alive, not ready, and saying why.
  ASSERT_TRUE(etcd->StopMember(0).ok());
  RunningTool agent({"--endpoints", etcd->ClientEndpoint(0), "agent", "--name", "alice", "--prefix",
                     "cilium/state/health/v1", "--key", "alice/ip", "--value", "10.0.0.1", "--key",
                     "alice/mac", "--value", "aa:bb", "--metrics-listen", "0"});
  ASSERT_TRUE(agent.Started());
  std::optional<int> port = MetricsPort(agent);
  ASSERT_TRUE(port.has_value()) << agent.Transcript();

  // (It says "starting", then "opening the backend" first.)
  HttpResponse ready = Await(*port, "/readyz", 503, "joining shared store cilium/state/health/v1");
  EXPECT_EQ(ready.code, 503) << ready.body;
  EXPECT_THAT(ready.body,
              HasSubstr("joining shared store cilium/state/health/v1: listing its keys"));
  HttpResponse healthy = HttpGet(*port, "/healthz");
  EXPECT_EQ(healthy.code, 200) << healthy.body;

  ASSERT_TRUE(etcd->StartMember(0).ok());
  ready = Await(*port, "/readyz", 200);
  ASSERT_EQ(ready.code, 200) << ready.body << agent.Transcript();
  EXPECT_THAT(ready.body,
              HasSubstr("ready: joined shared store cilium/state/health/v1, 2 keys written"));
  std::shared_ptr<Backend> client = Connect(*etcd);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(GetValue(*client, "cilium/state/health/v1/alice/ip"), "10.0.0.1");
  EXPECT_EQ(GetValue(*client, "cilium/state/health/v1/alice/mac"), "aa:bb");

  healthy = Await(*port, "/healthz", 200, "agent loop: turning");
  EXPECT_THAT(healthy.body, HasSubstr("agent loop: turning"));
  // The metrics are still served beside the probes.
  EXPECT_TRUE(SampleValue(Scrape(*port), "cilium_kvstore_operations_duration_seconds_count", {})
                  .has_value())
      << HttpGet(*port, "/metrics").body;
  EXPECT_EQ(HttpGet(*port, "/nothing-here").code, 404);
  // /status: the same in JSON, with the backend's state and its watch's freshness.
  HttpResponse status = HttpGet(*port, "/status");
  EXPECT_EQ(status.code, 200) << status.body;
  EXPECT_THAT(status.body, HasSubstr(R"("agent":"alice")"));
  EXPECT_THAT(status.body, HasSubstr(R"("ready":true)"));
  EXPECT_THAT(status.body, HasSubstr(R"("backend":{"message":)"));
  EXPECT_THAT(status.body, HasSubstr(R"("watches":[{"age-seconds":)"));
  EXPECT_THAT(status.body, HasSubstr(R"("prefix":"cilium/state/health/v1)"));

  agent.Signal(SIGTERM);
  EXPECT_EQ(agent.Wait(), 0) << agent.Transcript();
  client->Close();
}

// Writes what a remote cluster's clustermesh-apiserver writes: its cluster config and a node.
void WriteClusterState(const EtcdCluster& etcd, const std::string& name, int id) {
  std::shared_ptr<Backend> backend = Connect(etcd);
  ASSERT_NE(backend, nullptr);
  ASSERT_TRUE(backend
                  ->Update(Context(), "cilium/cluster-config/" + name,
                           R"({"id":)" + std::to_string(id) + R"(,"capabilities":{}})", false)
                  .ok());
  ASSERT_TRUE(
      backend->Update(Context(), "cilium/state/nodes/v1/" + name + "/node-1", "{}", false).ok());
  backend->Close();
}

TEST(MeshHealthTest, ReadyzNamesARemoteClusterThatIsDown) {
  std::unique_ptr<EtcdCluster> target = StartEtcd();
  std::unique_ptr<EtcdCluster> up = StartEtcd();
  std::unique_ptr<EtcdCluster> down = StartEtcd();
  ASSERT_TRUE(target && up && down);
  WriteClusterState(*up, "east", 1);
  WriteClusterState(*down, "west", 2);
  ASSERT_TRUE(down->StopMember(0).ok());
  const std::string dir = target->dir() + "/clustermesh";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/east") << "endpoints:\n- http://" << up->ClientEndpoint(0) << "\n";
  std::ofstream(dir + "/west") << "endpoints:\n- http://" << down->ClientEndpoint(0) << "\n";

  RunningTool mesh({"mesh", "--clustermesh-config", dir, "--target-endpoints",
                    target->ClientEndpoint(0), "--status-interval", "0", "--metrics-listen", "0"});
  ASSERT_TRUE(mesh.Started());
  std::optional<int> port = MetricsPort(mesh);
  ASSERT_TRUE(port.has_value()) << mesh.Transcript();

  // east becomes ready, west cannot: 503, naming west and counting it.
  HttpResponse ready;
  ASSERT_TRUE(EventuallyTrue([&] {
    ready = HttpGet(*port, "/readyz");
    return ready.body.find("cluster east: ready") != std::string::npos;
  })) << ready.body
      << mesh.Transcript();
  EXPECT_EQ(ready.code, 503) << ready.body;
  EXPECT_THAT(ready.body, HasSubstr("not ready: 1 of 2 remote clusters not ready"));
  EXPECT_THAT(ready.body, HasSubstr("cluster west: not ready connected=false"));
  HttpResponse healthy = Await(*port, "/healthz", 200, "mesh status loop: turning");
  EXPECT_EQ(healthy.code, 200) << healthy.body;
  EXPECT_THAT(healthy.body, HasSubstr("mesh status loop: turning"));
  EXPECT_THAT(healthy.body, HasSubstr("mesh: running"));
  // /status: every remote cluster's status in JSON.
  HttpResponse status = HttpGet(*port, "/status");
  EXPECT_EQ(status.code, 200) << status.body;
  EXPECT_THAT(status.body, HasSubstr(R"("ready":false)"));
  EXPECT_THAT(status.body, HasSubstr(R"("name":"west")"));
  EXPECT_THAT(status.body, HasSubstr(R"("name":"east")"));

  // west comes back: every cluster ready.
  ASSERT_TRUE(down->StartMember(0).ok());
  ready = Await(*port, "/readyz", 200);
  EXPECT_EQ(ready.code, 200) << ready.body << mesh.Transcript();
  EXPECT_THAT(ready.body, HasSubstr("ready: 2 remote clusters ready"));

  mesh.Signal(SIGTERM);
  EXPECT_EQ(mesh.Wait(), 0) << mesh.Transcript();
}

}  // namespace
}  // namespace kvstore::testing

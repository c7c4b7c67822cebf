// A consumer of the installed kvstore package (see CMakeLists.txt): a SharedStore on the embedded
// store, and an etcd backend with no server behind its endpoint. Prints one line and exits 0 only
// when every check passed.
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/backend.h"
#include "kvstore/cilium/cilium.h"
#include "kvstore/context.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/mesh/mesh.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"

namespace {

using namespace std::chrono_literals;

int failures = 0;

void Check(bool ok, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "kvstore_consumer: FAILED: %s\n", what.c_str());
  ++failures;
}

// A local key written through a SharedStore comes back through its watch into SharedKeysMap.
void CheckSharedStore() {
  std::shared_ptr<kvstore::memory::InMemoryStore> memory = kvstore::memory::InMemoryStore::Create();
  kvstore::store::Configuration config;
  config.prefix = "cilium/state/consumer/v1";
  config.key_creator = kvstore::store::KVPairCreator;
  config.backend = memory->NewClient("consumer");
  absl::StatusOr<std::unique_ptr<kvstore::store::SharedStore>> store =
      kvstore::store::JoinSharedStore(std::move(config));
  if (!store.ok()) {
    Check(false, "JoinSharedStore: " + store.status().ToString());
    return;
  }
  const kvstore::Context ctx = kvstore::Context::Background();
  absl::Status written =
      (*store)->UpdateLocalKeySync(ctx, kvstore::store::KVPair("node1", "10.0.0.1"));
  Check(written.ok(), "UpdateLocalKeySync: " + written.ToString());

  // The watch event may arrive after UpdateLocalKeySync returned.
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (seen.empty() && std::chrono::steady_clock::now() < deadline) {
    auto keys = (*store)->SharedKeysMap();
    if (auto it = keys.find("node1"); it != keys.end()) {
      absl::StatusOr<std::string> value = it->second->Marshal();
      seen = value.ok() ? *value : value.status().ToString();
    } else {
      std::this_thread::sleep_for(5ms);
    }
  }
  Check(seen == "10.0.0.1", "SharedKeysMap()[\"node1\"] is \"" + seen + "\", not \"10.0.0.1\"");
  (*store)->Close(ctx);
}

// NewEtcdBackend does not connect; an operation on a port nobody listens on fails within the
// request timeout.
void CheckEtcdBackend() {
  kvstore::etcd::EtcdConfig config;
  config.endpoints = {"127.0.0.1:1"};
  config.dial_timeout = 300ms;
  config.request_timeout = 300ms;
  absl::StatusOr<std::shared_ptr<kvstore::Backend>> backend =
      kvstore::etcd::NewEtcdBackend(std::move(config));
  if (!backend.ok()) {
    Check(false, "NewEtcdBackend: " + backend.status().ToString());
    return;
  }
  auto got = (*backend)->Get(kvstore::Context::Background(), "cilium/state/consumer/v1/node1");
  const absl::StatusCode code = got.status().code();
  Check(
      code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded,
      "Get without a server: " + got.status().ToString() + ", not Unavailable or DeadlineExceeded");
  // The asynchronous call reports the same, once, to its completion.
  std::promise<absl::Status> written;
  (*backend)->UpdateAsync(kvstore::Context::Background(), "cilium/state/consumer/v1/node1", "v",
                          false, [&written](absl::Status status) { written.set_value(status); });
  const absl::Status async_status = written.get_future().get();
  Check(async_status.code() == absl::StatusCode::kUnavailable ||
            async_status.code() == absl::StatusCode::kDeadlineExceeded,
        "UpdateAsync without a server: " + async_status.ToString() +
            ", not Unavailable or DeadlineExceeded");
  (*backend)->Close();
}

// A Mesh mirrors one in-memory remote cluster into an in-memory target in Cilium's layout.
void CheckMesh() {
  std::shared_ptr<kvstore::memory::InMemoryStore> remote = kvstore::memory::InMemoryStore::Create();
  std::shared_ptr<kvstore::memory::InMemoryStore> target = kvstore::memory::InMemoryStore::Create();
  std::shared_ptr<kvstore::Backend> remote_client = remote->NewClient("remote");
  std::shared_ptr<kvstore::Backend> target_client = target->NewClient("target");
  const kvstore::Context bg = kvstore::Context::Background();
  Check(remote_client->Update(bg, "cilium/cluster-config/c1", R"({"id":1})", false).ok() &&
            remote_client->Update(bg, "cilium/state/nodes/v1/c1/n1", "node", false).ok(),
        "writing the remote's state");
  kvstore::mesh::MeshOptions options;
  options.target = target_client;
  options.heartbeat_interval = 0ms;
  absl::StatusOr<std::unique_ptr<kvstore::mesh::Mesh>> mesh =
      kvstore::mesh::Mesh::New(std::move(options));
  if (!mesh.ok()) {
    Check(false, "Mesh::New: " + mesh.status().ToString());
    return;
  }
  kvstore::mesh::RemoteCluster cluster;
  cluster.name = "c1";
  cluster.backend = remote_client;
  Check((*mesh)->AddCluster(std::move(cluster)).ok(), "AddCluster");
  auto [ctx, cancel] = kvstore::WithCancel(bg);
  std::thread runner([&mesh, ctx = ctx] { (*mesh)->Run(ctx); });
  std::optional<std::string> mirrored;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!mirrored && std::chrono::steady_clock::now() < deadline) {
    auto got = target_client->Get(bg, "cilium/cache/nodes/v1/c1/n1");
    if (got.ok() && got->has_value()) mirrored = **got;
    std::this_thread::sleep_for(5ms);
  }
  cancel();
  runner.join();
  Check(mirrored == "node", "the mesh did not mirror cilium/state/nodes/v1/c1/n1");
}

// A typed Cilium node in a SharedStore: written as Cilium's JSON, read back as a Node.
void CheckCiliumNode() {
  std::shared_ptr<kvstore::memory::InMemoryStore> memory = kvstore::memory::InMemoryStore::Create();
  kvstore::store::Configuration config;
  config.prefix = std::string(kvstore::cilium::kNodesPrefix);
  config.key_creator = kvstore::cilium::Creator<kvstore::cilium::Node>();
  config.backend = memory->NewClient("consumer");
  absl::StatusOr<std::unique_ptr<kvstore::store::SharedStore>> store =
      kvstore::store::JoinSharedStore(std::move(config));
  if (!store.ok()) {
    Check(false, "JoinSharedStore: " + store.status().ToString());
    return;
  }
  kvstore::cilium::Node node;
  node.name = "n1";
  node.cluster = "c1";
  node.cluster_id = 1;
  node.ip_addresses = {{std::string(kvstore::cilium::kNodeInternalIP), "10.0.0.1"}};
  const kvstore::Context ctx = kvstore::Context::Background();
  Check((*store)->UpdateLocalKeySync(ctx, node).ok(), "UpdateLocalKeySync(node)");
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (seen.empty() && std::chrono::steady_clock::now() < deadline) {
    auto keys = (*store)->SharedKeysMap();
    if (auto it = keys.find("c1/n1"); it != keys.end()) {
      const auto* read = dynamic_cast<const kvstore::cilium::Node*>(it->second.get());
      seen = read != nullptr && read->ip_addresses ? (*read->ip_addresses)[0].ip : "not a Node";
    } else {
      std::this_thread::sleep_for(5ms);
    }
  }
  Check(seen == "10.0.0.1", "the node read back has IP \"" + seen + "\", not 10.0.0.1");
  auto stored = memory->NewClient("reader")->Get(ctx, "cilium/state/nodes/v1/c1/n1");
  Check(stored.ok() && stored->has_value() &&
            (*stored)->starts_with(R"({"Name":"n1","Cluster":"c1",)"),
        "the node is not stored as Cilium's JSON");
  (*store)->Close(ctx);
}

}  // namespace

int main() {
  CheckSharedStore();
  CheckEtcdBackend();
  CheckMesh();
  CheckCiliumNode();
  if (failures != 0) {
    std::printf("kvstore_consumer: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf(
      "kvstore_consumer: SharedStore on the in-memory store, the etcd backend, the mesh and a "
      "typed Cilium node work\n");
  return 0;
}

// The typed keys in the stores, on the embedded store: a SyncStore publishes nodes and
// identities, a WatchStore (checking as an agent checks a remote cluster) reads them back, and a
// SharedStore shares them.
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kvstore/cilium/cilium.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/paths.h"
#include "kvstore/store/shared_store.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "tests/support/eventually.h"

namespace kvstore::cilium {
namespace {

// Records the marshalled value of every typed key it is told about, by name.
class ValuesObserver : public store::Observer {
 public:
  void OnUpdate(const store::Key& key) override {
    absl::StatusOr<std::string> value = key.Marshal();
    std::lock_guard lock(mu_);
    values_[key.GetKeyName()] = value.ok() ? *value : value.status().ToString();
  }
  void OnDelete(const store::NamedKey& key) override {
    std::lock_guard lock(mu_);
    values_.erase(key.GetKeyName());
  }
  std::map<std::string, std::string> Values() const {
    std::lock_guard lock(mu_);
    return values_;
  }

 private:
  mutable std::mutex mu_;  // guards values_
  std::map<std::string, std::string> values_;
};

Node MakeNode(std::string name, uint32_t cluster_id) {
  Node node;
  node.name = std::move(name);
  node.cluster = "c1";
  node.cluster_id = cluster_id;
  node.ip_addresses = {{std::string(kNodeInternalIP), "10.0.0.1"}};
  node.ipv4_alloc_cidr = *IPNet::Parse("10.244.1.0/24");
  node.source = "kvstore";
  return node;
}

TEST(CiliumStoresTest, SyncStoreWritesWhatAValidatingWatchStoreReads) {
  std::shared_ptr<memory::InMemoryStore> memory = memory::InMemoryStore::Create();
  std::shared_ptr<Backend> writer = memory->NewClient("writer");
  std::shared_ptr<Backend> reader = memory->NewClient("reader");
  auto [ctx, cancel] = WithCancel(Context::Background());

  auto nodes = store::NewWorkqueueSyncStore("c1", writer, std::string(kNodesPrefix));
  store::WorkqueueSyncStoreOptions unleased;
  unleased.with_lease = false;
  auto identities =
      store::NewWorkqueueSyncStore("c1", writer, std::string(kIdentitiesPrefix), unleased);
  std::thread nodes_thread([&, ctx = ctx] { nodes->Run(ctx); });
  std::thread identities_thread([&, ctx = ctx] { identities->Run(ctx); });

  ASSERT_TRUE(nodes->UpsertKey(ctx, MakeNode("n1", 1)).ok());
  // A node claiming another cluster ID: written, but not taken by the checking reader.
  ASSERT_TRUE(nodes->UpsertKey(ctx, MakeNode("bad", 7)).ok());
  Identity identity;
  identity.id = 65537;
  identity.labels = {{"k8s", "app", "web"}};
  ASSERT_TRUE(identities->UpsertKey(ctx, identity).ok());

  const ClusterInfo cluster{"c1", 1, 0};
  auto node_observer = std::make_shared<ValuesObserver>();
  auto node_reader =
      store::NewRestartableWatchStore("c1", ValidatingCreator<Node>(cluster), node_observer);
  std::thread node_watch(
      [&, ctx = ctx] { node_reader->Watch(ctx, *reader, JoinPath(kNodesPrefix, "c1")); });
  auto identity_observer = std::make_shared<ValuesObserver>();
  auto identity_reader = store::NewRestartableWatchStore("c1", ValidatingCreator<Identity>(cluster),
                                                         identity_observer);
  std::thread identity_watch(
      [&, ctx = ctx] { identity_reader->Watch(ctx, *reader, JoinPath(kIdentitiesPrefix, "id")); });

  const std::string expected = *MakeNode("n1", 1).Marshal();
  EXPECT_TRUE(testing::Eventually([&] {
    auto values = node_observer->Values();
    return values.count("c1/n1") == 1 && values["c1/n1"] == expected;
  }));
  EXPECT_TRUE(
      testing::Eventually([&] { return identity_observer->Values().count("id/65537") == 1; }));
  EXPECT_EQ(identity_observer->Values()["id/65537"], "k8s:app=web;");
  // What the stores wrote is Cilium's bytes.
  absl::StatusOr<std::optional<std::string>> stored =
      reader->Get(ctx, JoinPath(kNodesPrefix, "c1/n1"));
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ(**stored, expected);
  ASSERT_TRUE(testing::Eventually([&] { return node_reader->Synced(); }));
  EXPECT_EQ(node_observer->Values().count("c1/bad"), 0u);

  cancel();
  nodes_thread.join();
  identities_thread.join();
  node_watch.join();
  identity_watch.join();
}

TEST(CiliumStoresTest, SharedStoreSharesTypedNodes) {
  std::shared_ptr<memory::InMemoryStore> memory = memory::InMemoryStore::Create();
  store::Configuration config;
  config.prefix = std::string(kNodesPrefix);
  config.key_creator = Creator<Node>();
  config.backend = memory->NewClient("agent");
  auto shared = store::JoinSharedStore(std::move(config));
  ASSERT_TRUE(shared.ok()) << shared.status();
  const Context ctx = Context::Background();
  ASSERT_TRUE((*shared)->UpdateLocalKeySync(ctx, MakeNode("n2", 1)).ok());
  EXPECT_TRUE(testing::Eventually([&] {
    auto keys = (*shared)->SharedKeysMap();
    auto it = keys.find("c1/n2");
    return it != keys.end() && dynamic_cast<const Node*>(it->second.get()) != nullptr &&
           dynamic_cast<const Node*>(it->second.get())->cluster_id == 1;
  }));
  (*shared)->Close(ctx);
}

}  // namespace
}  // namespace kvstore::cilium

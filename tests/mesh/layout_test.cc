#include <gtest/gtest.h>

#include "kvstore/mesh/mesh.h"

namespace kvstore::mesh {
namespace {

// The layout kvstoremesh's own tests expect (pkg/clustermesh/kvstoremesh).
TEST(LayoutTest, ReadsStateOfAPlainRemote) {
  std::vector<MirroredPrefix> layout = CiliumLayout("c1", {});
  std::vector<MirroredPrefix> expected = {
      {"nodes", "cilium/state/nodes/v1/c1", "cilium/cache/nodes/v1/c1", "cilium/cache/nodes/v1",
       "cilium/state/nodes/v1"},
      {"services", "cilium/state/services/v1/c1", "cilium/cache/services/v1/c1",
       "cilium/cache/services/v1", "cilium/state/services/v1"},
      {"identities", "cilium/state/identities/v1/id", "cilium/cache/identities/v1/c1/id",
       "cilium/cache/identities/v1", "cilium/state/identities/v1"},
      {"endpoints", "cilium/state/ip/v1/default", "cilium/cache/ip/v1/c1", "cilium/cache/ip/v1",
       "cilium/state/ip/v1"},
  };
  EXPECT_EQ(layout, expected);
}

TEST(LayoutTest, ReadsTheCacheOfACachedRemote) {
  ClusterCapabilities cached;
  cached.cached = true;
  std::vector<MirroredPrefix> layout = CiliumLayout("c2", cached);
  ASSERT_EQ(layout.size(), 4u);
  for (const MirroredPrefix& prefix : layout) {
    EXPECT_EQ(prefix.source, prefix.target) << prefix.name;
    EXPECT_EQ(prefix.source_synced_key, prefix.synced_key) << prefix.name;
  }
  EXPECT_EQ(layout[2].source, "cilium/cache/identities/v1/c2/id");
  EXPECT_EQ(layout[3].source, "cilium/cache/ip/v1/c2");
}

TEST(LayoutTest, MirrorsServiceExportsOnlyWhenTheRemoteTellsOfThem) {
  ClusterCapabilities exports;
  exports.service_exports_enabled = false;
  std::vector<MirroredPrefix> layout = CiliumLayout("c1", exports);
  ASSERT_EQ(layout.size(), 5u);
  EXPECT_EQ(layout[4],
            (MirroredPrefix{"service-exports", "cilium/state/serviceexports/v1/c1",
                            "cilium/cache/serviceexports/v1/c1", "cilium/cache/serviceexports/v1",
                            "cilium/state/serviceexports/v1"}));
}

TEST(LayoutTest, DrainsCanariesFirstThenEveryCacheDirectory) {
  std::vector<std::string> expected = {"cilium/synced/c1/",
                                       "cilium/cache/nodes/v1/c1/",
                                       "cilium/cache/services/v1/c1/",
                                       "cilium/cache/identities/v1/c1/",
                                       "cilium/cache/ip/v1/c1/",
                                       "cilium/cache/serviceexports/v1/c1/"};
  EXPECT_EQ(DrainPrefixes("c1"), expected);
  std::vector<MirroredPrefix> custom = {{"nodes/v1", "cilium/state/nodes/v1/C",
                                         "cilium/cache/nodes/v1/C", "cilium/cache/nodes/v1",
                                         "cilium/state/nodes/v1"}};
  EXPECT_EQ(DrainPrefixes("C", custom),
            (std::vector<std::string>{"cilium/synced/C/", "cilium/cache/nodes/v1/C/"}));
}

}  // namespace
}  // namespace kvstore::mesh

#include "kvstore/mesh/cluster_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kvstore/memory/in_memory_store.h"

namespace kvstore::mesh {
namespace {

using ::testing::HasSubstr;

ClusterConfig Config(uint32_t id, bool synced_canaries = false, bool cached = false,
                     uint32_t max_connected_clusters = 0,
                     std::optional<bool> service_exports_enabled = std::nullopt) {
  ClusterConfig config;
  config.id = id;
  config.capabilities.synced_canaries = synced_canaries;
  config.capabilities.cached = cached;
  config.capabilities.max_connected_clusters = max_connected_clusters;
  config.capabilities.service_exports_enabled = service_exports_enabled;
  return config;
}

TEST(ClusterConfigTest, ParsesCiliumsJsonAndIgnoresUnknownFields) {
  absl::StatusOr<ClusterConfig> config = ParseClusterConfig(
      R"({"id":7,"capabilities":{"syncedCanaries":true,"cached":false,)"
      R"("maxConnectedClusters":511,"serviceExportsEnabled":false,"future":1},"other":"x"})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->id, 7u);
  EXPECT_TRUE(config->capabilities.synced_canaries);
  EXPECT_FALSE(config->capabilities.cached);
  EXPECT_EQ(config->capabilities.max_connected_clusters, 511u);
  EXPECT_EQ(config->capabilities.service_exports_enabled, std::optional<bool>(false));

  absl::StatusOr<ClusterConfig> bare = ParseClusterConfig(R"({"id":3})");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(*bare, Config(3));
}

TEST(ClusterConfigTest, RejectsWhatIsNotAClusterConfig) {
  for (const char* bad :
       {"", "not json", "[1]", R"({"id":-1})", R"({"id":"7"})", R"({"id":4294967296})",
        R"({"capabilities":[]})", R"({"capabilities":{"cached":"yes"}})",
        R"({"capabilities":{"maxConnectedClusters":1.5}})",
        R"({"capabilities":{"serviceExportsEnabled":1}})"}) {
    absl::StatusOr<ClusterConfig> config = ParseClusterConfig(bad);
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ClusterConfigTest, FormatsAsGoDoesAndRoundTrips) {
  EXPECT_EQ(FormatClusterConfig({}), R"({"capabilities":{}})");
  ClusterConfig config = Config(12, true, true, 255, false);
  const std::string text = FormatClusterConfig(config);
  EXPECT_EQ(text, R"({"id":12,"capabilities":{"syncedCanaries":true,"cached":true,)"
                  R"("maxConnectedClusters":255,"serviceExportsEnabled":false}})");
  absl::StatusOr<ClusterConfig> parsed = ParseClusterConfig(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, config);
}

TEST(ClusterConfigTest, ValidatesNamesAsCilium) {
  for (const std::string& good : {std::string("a"), std::string("c1"), std::string("cluster-1"),
                                  std::string("0"), std::string(32, 'x')}) {
    EXPECT_TRUE(ValidateClusterName(good).ok()) << good;
  }
  EXPECT_THAT(ValidateClusterName("").message(), HasSubstr("empty"));
  EXPECT_THAT(ValidateClusterName(std::string(33, 'x')).message(), HasSubstr("32"));
  for (const char* bad : {"C", "a_b", "a.b", "a/b", "-a", "a-", "a b"}) {
    absl::Status status = ValidateClusterName(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ClusterConfigTest, ValidatesIdsWithinMaxConnectedClusters) {
  EXPECT_TRUE(ValidateClusterId(1).ok());
  EXPECT_TRUE(ValidateClusterId(255).ok());
  EXPECT_THAT(ValidateClusterId(0).message(), HasSubstr("between 1 and 255"));
  EXPECT_FALSE(ValidateClusterId(256).ok());
  EXPECT_TRUE(ValidateClusterId(511, 511).ok());
  EXPECT_FALSE(ValidateClusterId(512, 511).ok());
  EXPECT_THAT(ValidateClusterId(1, 300).message(), HasSubstr("neither 255 nor 511"));
  EXPECT_FALSE(ValidateClusterConfig(Config(300)).ok());
  EXPECT_TRUE(ValidateClusterConfig(Config(300, false, false, 511)).ok());
}

TEST(ClusterConfigTest, GetsAndSetsThroughABackend) {
  auto store = memory::InMemoryStore::Create();
  std::shared_ptr<Backend> client = store->NewClient();
  const Context ctx;
  absl::StatusOr<std::optional<ClusterConfig>> missing = GetClusterConfig(ctx, *client, "c1");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  ClusterConfig config = Config(4, true);
  ASSERT_TRUE(SetClusterConfig(ctx, *client, "c1", config, true).ok());
  absl::StatusOr<std::optional<std::string>> raw = client->Get(ctx, "cilium/cluster-config/c1");
  ASSERT_TRUE(raw.ok() && raw->has_value());
  EXPECT_EQ(**raw, R"({"id":4,"capabilities":{"syncedCanaries":true}})");
  absl::StatusOr<std::optional<ClusterConfig>> got = GetClusterConfig(ctx, *client, "c1");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ(**got, config);

  ASSERT_TRUE(client->Update(ctx, "cilium/cluster-config/c2", "{oops", false).ok());
  absl::StatusOr<std::optional<ClusterConfig>> broken = GetClusterConfig(ctx, *client, "c2");
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(broken.status().message(), HasSubstr("cilium/cluster-config/c2"));
}

}  // namespace
}  // namespace kvstore::mesh

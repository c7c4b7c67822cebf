#include "kvstore/paths.h"

#include <gtest/gtest.h>

namespace kvstore {
namespace {

TEST(PathsTest, ScopeIsPartsThreeAndFour) {
  EXPECT_EQ(GetScopeFromKey("cilium/state/nodes/v1"), "nodes/v1");
  EXPECT_EQ(GetScopeFromKey("cilium/state/nodes/v1/default/node1"), "nodes/v1");
  EXPECT_EQ(GetScopeFromKey("cilium/synced/cluster1/cilium/state/nodes/v1"), "cluster1/cilium");
}

TEST(PathsTest, ShortKeysUseTheirFirstTwelveCharacters) {
  EXPECT_EQ(GetScopeFromKey("cilium/state/nodes"), "cilium/state");
  EXPECT_EQ(GetScopeFromKey("short"), "short");
  EXPECT_EQ(GetScopeFromKey(""), "");
}

TEST(PathsTest, StateToCachePrefix) {
  EXPECT_EQ(StateToCachePrefix("cilium/state/nodes/v1"), "cilium/cache/nodes/v1");
  EXPECT_EQ(StateToCachePrefix("cilium/state"), "cilium/cache");
  EXPECT_EQ(StateToCachePrefix("other/state/x"), "other/state/x");
}

TEST(PathsTest, Constants) {
  EXPECT_EQ(kBaseKeyPrefix, "cilium");
  EXPECT_EQ(kSyncedPrefix, "cilium/synced");
  EXPECT_EQ(kHeartbeatPath, "cilium/.heartbeat");
  EXPECT_EQ(kInitLockPath, "cilium/.initlock");
}

TEST(PathsTest, JoinPathUsesSingleSlashes) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("a//", "/b/"), "a/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(JoinPath("a", ""), "a");
  EXPECT_EQ(JoinPath("a", "b/c"), "a/b/c");
}

TEST(PathsTest, CheckKeyNameRejectsNamesThatJoiningWouldChange) {
  EXPECT_TRUE(CheckKeyName("node1").ok());
  EXPECT_TRUE(CheckKeyName("default/node1").ok());
  EXPECT_EQ(CheckKeyName("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckKeyName("/a").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckKeyName("a/").code(), absl::StatusCode::kInvalidArgument);
}

TEST(PathsTest, SyncedKeyPath) {
  EXPECT_EQ(SyncedKeyPath("c1", "cilium/state/nodes/v1"), "cilium/synced/c1/cilium/state/nodes/v1");
}

TEST(PathsTest, DirectoryPrefixEndsInExactlyOneSlash) {
  EXPECT_EQ(DirectoryPrefix("a/b"), "a/b/");
  EXPECT_EQ(DirectoryPrefix("a/b//"), "a/b/");
  EXPECT_EQ(DirectoryPrefix(""), "/");
}

TEST(PathsTest, NameBelowInvertsJoinPathAndRejectsSiblings) {
  EXPECT_EQ(NameBelow("a/b", JoinPath("a/b", "x/y")), std::optional<std::string_view>("x/y"));
  EXPECT_EQ(NameBelow("a/b/", "a/b/x"), std::optional<std::string_view>("x"));
  EXPECT_EQ(NameBelow("a/b", "a/bc/x"), std::nullopt);
  EXPECT_EQ(NameBelow("a/b", "z/x"), std::nullopt);
}

}  // namespace
}  // namespace kvstore

// Key ranges and page sizing of the etcd backend's lists.
#include "backend/etcd/key_range.h"

#include <gtest/gtest.h>

namespace kvstore::etcd {
namespace {

TEST(PrefixRangeTest, IncrementsTheLastByte) {
  KeyRange r = PrefixRange("cilium/state/");
  EXPECT_EQ(r.start, "cilium/state/");
  EXPECT_EQ(r.end, "cilium/state0");
}

TEST(PrefixRangeTest, CarriesOverTrailing0xff) {
  KeyRange r = PrefixRange(std::string("a\xff\xff", 3));
  EXPECT_EQ(r.end, "b");
  KeyRange all_ff = PrefixRange(std::string("\xff", 1));
  EXPECT_EQ(all_ff.end, std::string(1, '\0')) << "no upper bound";
}

TEST(PrefixRangeTest, EmptyPrefixIsEverything) {
  KeyRange r = PrefixRange("");
  EXPECT_EQ(r.start, std::string(1, '\0'));
  EXPECT_EQ(r.end, std::string(1, '\0'));
}

TEST(KeyAfterTest, IsTheSmallestLargerKey) {
  EXPECT_EQ(KeyAfter("abc"), std::string("abc\0", 4));
  EXPECT_LT(std::string("abc"), KeyAfter("abc"));
  EXPECT_LT(KeyAfter("abc"), std::string("abc\x01", 4));
}

TEST(NextPageLimitTest, StartsSmallGrowsWhileUnderTheByteTargetAndShrinksOver) {
  EXPECT_EQ(FirstPageLimit(10000), kFirstListPageSize);
  EXPECT_EQ(FirstPageLimit(256), 256);
  // Small values: fourfold growth, capped at the configured size.
  EXPECT_EQ(NextPageLimit(10000, 500, 500, 500 * 300), 2000);
  EXPECT_EQ(NextPageLimit(10000, 8000, 8000, 8000 * 300), 10000);
  // 16 KiB values: only as many as fit in the target.
  EXPECT_EQ(NextPageLimit(10000, 100, 100, 100 * 16384), 256);
  // Over the target: shrunk to what fits, never below one key.
  EXPECT_EQ(NextPageLimit(10000, 1000, 1000, 1000 * 16384), 256);
  EXPECT_EQ(NextPageLimit(10000, 10, 1, kListPageTargetBytes * 100), 1);
}

}  // namespace
}  // namespace kvstore::etcd

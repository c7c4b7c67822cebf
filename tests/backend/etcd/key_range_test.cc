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

TEST(FirstPageLimitTest, IsSmallUnlessConfiguredSmaller) {
  EXPECT_EQ(FirstPageLimit(kDefaultListPageSize), kFirstListPageSize);
  EXPECT_EQ(FirstPageLimit(256), 256);
}

TEST(FittingPageLimitTest, GoesStraightToWhatFitsInTheByteTarget) {
  // After a first page of small keys: straight to the byte target, no growth in steps.
  EXPECT_EQ(FittingPageLimit(kDefaultListPageSize, 500, 500 * 256),
            static_cast<int64_t>(kListPageTargetBytes / 256));
  // Capped at the configured size.
  EXPECT_EQ(FittingPageLimit(1000, 500, 500 * 256), 1000);
  // Large keys: fewer, never below one.
  EXPECT_EQ(FittingPageLimit(kDefaultListPageSize, 100, 100 * 16384),
            static_cast<int64_t>(kListPageTargetBytes / 16384));
  EXPECT_EQ(FittingPageLimit(kDefaultListPageSize, 1, kListPageTargetBytes * 100), 1);
  // An empty page tells nothing: the configured size.
  EXPECT_EQ(FittingPageLimit(1000, 0, 0), 1000);
}

}  // namespace
}  // namespace kvstore::etcd

// Key ranges and page sizing of the etcd backend's lists.
#include "backend/etcd/key_range.h"

#include <gtest/gtest.h>

#include <string>

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

etcdserverpb::RangeResponse Page(int64_t revision, bool more, int keys, size_t value_bytes) {
  etcdserverpb::RangeResponse response;
  response.mutable_header()->set_revision(revision);
  response.set_more(more);
  for (int i = 0; i < keys; ++i) {
    mvccpb::KeyValue* kv = response.add_kvs();
    kv->set_key("p/" + std::to_string(1000 + i));
    kv->set_value(std::string(value_bytes, 'v'));
  }
  return response;
}

TEST(ListPagerTest, PinsTheFirstRevisionAndContinuesAfterTheLastKey) {
  ListPager pager("p/", kDefaultListPageSize);
  etcdserverpb::RangeRequest first = pager.NextRequest();
  EXPECT_EQ(first.key(), "p/");
  EXPECT_EQ(first.range_end(), "p0");
  EXPECT_EQ(first.limit(), kFirstListPageSize);
  EXPECT_EQ(first.revision(), 0);

  ASSERT_TRUE(pager.Advance(Page(42, true, 3, 100)));
  etcdserverpb::RangeRequest second = pager.NextRequest();
  EXPECT_EQ(second.key(), KeyAfter("p/1002"));
  EXPECT_EQ(second.revision(), 42);
  EXPECT_EQ(second.limit(), FittingPageLimit(kDefaultListPageSize, 3, 3 * (6 + 100)));
  EXPECT_EQ(pager.revision(), 42);

  EXPECT_FALSE(pager.Advance(Page(43, false, 2, 100)));
  EXPECT_EQ(pager.revision(), 42) << "the list stays at the revision of its first page";
}

TEST(ListPagerTest, PageSizeZeroIsOneUnpaginatedRequest) {
  ListPager pager("p/", 0);
  EXPECT_EQ(pager.NextRequest().limit(), 0);
  EXPECT_FALSE(pager.Advance(Page(7, true, 5, 10)));
}

TEST(ListPagerTest, RestartGoesBackToTheFirstKeyAtAFreshRevision) {
  ListPager pager("p/", 256);
  ASSERT_TRUE(pager.Advance(Page(9, true, 2, 10)));
  pager.Restart();
  etcdserverpb::RangeRequest request = pager.NextRequest();
  EXPECT_EQ(request.key(), "p/");
  EXPECT_EQ(request.revision(), 0);
  EXPECT_EQ(request.limit(), 256);
}

TEST(ListPagerTest, EmptyPageEndsTheList) {
  ListPager pager("p/", 256);
  EXPECT_FALSE(pager.Advance(Page(9, true, 0, 0)));
}

}  // namespace
}  // namespace kvstore::etcd

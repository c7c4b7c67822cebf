#include "kvstore/workqueue/rate_limiting_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/workqueue/rate_limiter.h"

namespace kvstore::workqueue {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::optional<std::string> GetOrTimeOut(Queue<std::string>& queue) {
  auto [ctx, cancel] = WithTimeout(Context(), seconds(30));
  std::optional<std::string> item = queue.Get(ctx);
  cancel();
  return item;
}

TEST(RateLimitingQueueTest, RetriesWithGrowingBackOffUntilForgotten) {
  auto clock = std::make_shared<FakeClock>();
  RateLimitingQueue<std::string> queue(
      std::make_shared<ItemExponentialFailureRateLimiter<std::string>>(seconds(1), seconds(60)),
      clock);

  queue.Add("a");
  ASSERT_EQ(GetOrTimeOut(queue), "a");
  // The first attempt fails: retried after 1 s.
  queue.AddRateLimited("a");
  queue.Done("a");
  EXPECT_EQ(queue.NumRequeues("a"), 1);
  EXPECT_EQ(queue.Len(), 0u);
  clock->Advance(seconds(1));
  ASSERT_EQ(GetOrTimeOut(queue), "a");

  // The second fails too: 2 s; a marker due at 1 s shows "a" is not queued before.
  queue.AddRateLimited("a");
  queue.Done("a");
  queue.AddAfter("marker", seconds(1));
  clock->Advance(seconds(1));
  ASSERT_EQ(GetOrTimeOut(queue), "marker");
  queue.Done("marker");
  EXPECT_EQ(queue.Len(), 0u);
  clock->Advance(seconds(1));
  ASSERT_EQ(GetOrTimeOut(queue), "a");
  EXPECT_EQ(queue.NumRequeues("a"), 2);

  // Success: the back-off starts over.
  queue.Forget("a");
  queue.Done("a");
  EXPECT_EQ(queue.NumRequeues("a"), 0);
  queue.AddRateLimited("a");
  clock->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue), "a");
  queue.ShutDown();
}

TEST(RateLimitingQueueTest, NullLimiterMeansDefaultControllerRateLimiter) {
  auto clock = std::make_shared<FakeClock>();
  RateLimitingQueue<std::string> queue(nullptr, clock);
  queue.AddRateLimited("a");
  EXPECT_EQ(queue.NumRequeues("a"), 1);
  clock->Advance(milliseconds(5));
  EXPECT_EQ(GetOrTimeOut(queue), "a");
}

// The default limiter's bucket (burst 100, 10 qps) refills on the queue's clock, not on real
// time: once the burst is spent, simulated time alone makes room again.
TEST(RateLimitingQueueTest, DefaultLimiterBucketRefillsOnTheQueueClock) {
  auto clock = std::make_shared<FakeClock>();
  RateLimitingQueue<std::string> queue(nullptr, clock);
  for (int i = 0; i < 100; ++i) queue.AddRateLimited("burst" + std::to_string(i));
  clock->Advance(milliseconds(5));
  EXPECT_EQ(queue.Len(), 100u);
  clock->Advance(seconds(10));  // refills the bucket, on this clock only
  queue.AddRateLimited("late");
  clock->Advance(milliseconds(5));  // the per-item back-off of a first retry
  EXPECT_EQ(queue.Len(), 101u);
}

TEST(RateLimitingQueueTest, BucketSharedWithTheQueueClock) {
  auto clock = std::make_shared<FakeClock>();
  RateLimitingQueue<std::string> queue(
      std::make_shared<BucketRateLimiter<std::string>>(1.0, 1, clock), clock);
  queue.AddRateLimited("first");   // the burst token: at once
  queue.AddRateLimited("second");  // 1 s later
  EXPECT_EQ(queue.Len(), 1u);
  EXPECT_EQ(GetOrTimeOut(queue), "first");
  clock->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue), "second");
}

TEST(RateLimitingQueueTest, ShutDownDropsItemsWaitingForTheirRetry) {
  auto clock = std::make_shared<FakeClock>();
  RateLimitingQueue<std::string> queue(
      std::make_shared<ItemFastSlowRateLimiter<std::string>>(seconds(1), seconds(10), 1), clock);
  queue.AddRateLimited("a");
  queue.ShutDown();
  clock->Advance(seconds(10));
  EXPECT_EQ(queue.Get(), std::nullopt);
}

}  // namespace
}  // namespace kvstore::workqueue

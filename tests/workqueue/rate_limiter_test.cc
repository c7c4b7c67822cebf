#include "kvstore/workqueue/rate_limiter.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kvstore/clock.h"

namespace kvstore::workqueue {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(ItemExponentialFailureRateLimiterTest, DoublesPerFailureUpToTheCap) {
  ItemExponentialFailureRateLimiter<std::string> limiter(milliseconds(1), seconds(1));
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(limiter.When("a"), milliseconds(1 << i)) << "failure " << i;
  }
  EXPECT_EQ(limiter.When("a"), seconds(1));  // 1024 ms, capped
  EXPECT_EQ(limiter.When("a"), seconds(1));
  EXPECT_EQ(limiter.NumRequeues("a"), 12);
  EXPECT_EQ(limiter.When("b"), milliseconds(1)) << "items back off independently";
}

TEST(ItemExponentialFailureRateLimiterTest, ForgetStartsOver) {
  ItemExponentialFailureRateLimiter<std::string> limiter(milliseconds(5), seconds(10));
  limiter.When("a");
  limiter.When("a");
  EXPECT_EQ(limiter.NumRequeues("a"), 2);
  limiter.Forget("a");
  EXPECT_EQ(limiter.NumRequeues("a"), 0);
  EXPECT_EQ(limiter.When("a"), milliseconds(5));
}

TEST(ItemExponentialFailureRateLimiterTest, ManyFailuresDoNotOverflow) {
  ItemExponentialFailureRateLimiter<int> small(nanoseconds(1), hours(1));
  nanoseconds previous{0};
  for (int i = 0; i < 2000; ++i) {
    nanoseconds delay = small.When(7);
    ASSERT_GE(delay, previous) << "failure " << i;
    ASSERT_LE(delay, hours(1)) << "failure " << i;
    previous = delay;
  }
  EXPECT_EQ(previous, hours(1));

  ItemExponentialFailureRateLimiter<int> unbounded(seconds(1), nanoseconds::max());
  for (int i = 0; i < 100; ++i) ASSERT_GT(unbounded.When(7), nanoseconds::zero());
  EXPECT_EQ(unbounded.When(7), nanoseconds::max());
}

TEST(ItemFastSlowRateLimiterTest, FastForTheFirstAttemptsThenSlow) {
  ItemFastSlowRateLimiter<std::string> limiter(milliseconds(5), seconds(10), 3);
  EXPECT_EQ(limiter.When("a"), milliseconds(5));
  EXPECT_EQ(limiter.When("a"), milliseconds(5));
  EXPECT_EQ(limiter.When("a"), milliseconds(5));
  EXPECT_EQ(limiter.When("a"), seconds(10));
  EXPECT_EQ(limiter.When("a"), seconds(10));
  EXPECT_EQ(limiter.NumRequeues("a"), 5);
  EXPECT_EQ(limiter.When("b"), milliseconds(5)) << "items are counted independently";

  limiter.Forget("a");
  EXPECT_EQ(limiter.NumRequeues("a"), 0);
  EXPECT_EQ(limiter.When("a"), milliseconds(5));
}

TEST(BucketRateLimiterTest, BurstThenSteadyRate) {
  auto clock = std::make_shared<FakeClock>();
  BucketRateLimiter<std::string> limiter(10.0, 3, clock);
  EXPECT_EQ(limiter.When("a"), nanoseconds::zero());
  EXPECT_EQ(limiter.When("b"), nanoseconds::zero());
  EXPECT_EQ(limiter.When("a"), nanoseconds::zero());
  // The bucket is empty: each further call waits one more token (100 ms at 10 qps).
  EXPECT_EQ(limiter.When("c"), milliseconds(100));
  EXPECT_EQ(limiter.When("d"), milliseconds(200));

  clock->Advance(milliseconds(200));  // pays back the two tokens promised
  EXPECT_EQ(limiter.When("e"), milliseconds(100));
  clock->Advance(milliseconds(100));
  EXPECT_EQ(limiter.When("f"), milliseconds(100));
  clock->Advance(milliseconds(150));
  EXPECT_EQ(limiter.When("g"), milliseconds(50));

  // A long pause refills the bucket to the burst, not beyond.
  clock->Advance(hours(1));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.When("h"), nanoseconds::zero());
  EXPECT_EQ(limiter.When("h"), milliseconds(100));

  EXPECT_EQ(limiter.NumRequeues("h"), 0);
  limiter.Forget("h");
}

TEST(BucketRateLimiterTest, DegenerateSettings) {
  auto clock = std::make_shared<FakeClock>();
  BucketRateLimiter<int> no_burst(10.0, 0, clock);
  EXPECT_EQ(no_burst.When(1), nanoseconds::max());

  BucketRateLimiter<int> no_refill(0.0, 2, clock);
  EXPECT_EQ(no_refill.When(1), nanoseconds::zero());
  EXPECT_EQ(no_refill.When(1), nanoseconds::zero());
  clock->Advance(hours(1));
  EXPECT_EQ(no_refill.When(1), nanoseconds::max());

  BucketRateLimiter<int> unlimited(std::numeric_limits<double>::infinity(), 1, clock);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(unlimited.When(1), nanoseconds::zero());
}

TEST(MaxOfRateLimiterTest, TakesTheLongestDelayAndTheLargestCount) {
  auto exponential =
      std::make_shared<ItemExponentialFailureRateLimiter<std::string>>(milliseconds(1), seconds(1));
  auto fast_slow =
      std::make_shared<ItemFastSlowRateLimiter<std::string>>(milliseconds(5), seconds(3), 2);
  MaxOfRateLimiter<std::string> limiter({exponential, fast_slow});

  EXPECT_EQ(limiter.When("a"), milliseconds(5));   // max(1 ms, 5 ms)
  EXPECT_EQ(limiter.When("a"), milliseconds(5));   // max(2 ms, 5 ms)
  EXPECT_EQ(limiter.When("a"), seconds(3));        // max(4 ms, 3 s)
  for (int i = 0; i < 10; ++i) limiter.When("a");  // exponential reaches its 1 s cap
  EXPECT_EQ(limiter.When("a"), seconds(3));
  EXPECT_EQ(limiter.NumRequeues("a"), 14);

  exponential->Forget("a");
  EXPECT_EQ(limiter.NumRequeues("a"), 14) << "the fast-slow limiter still counts 14";

  limiter.Forget("a");
  EXPECT_EQ(exponential->NumRequeues("a"), 0);
  EXPECT_EQ(fast_slow->NumRequeues("a"), 0);
  EXPECT_EQ(limiter.NumRequeues("a"), 0);
  EXPECT_EQ(limiter.When("a"), milliseconds(5));
}

TEST(MaxOfRateLimiterTest, EmptyNeverDelays) {
  MaxOfRateLimiter<std::string> limiter({});
  EXPECT_EQ(limiter.When("a"), nanoseconds::zero());
  EXPECT_EQ(limiter.NumRequeues("a"), 0);
  limiter.Forget("a");
}

TEST(DefaultControllerRateLimiterTest, ExponentialFromFiveMillisecondsWithinTheBurst) {
  std::shared_ptr<RateLimiter<std::string>> limiter = DefaultControllerRateLimiter<std::string>();
  // Fewer calls than the burst of 100: only the per-item back-off delays.
  EXPECT_EQ(limiter->When("a"), milliseconds(5));
  EXPECT_EQ(limiter->When("a"), milliseconds(10));
  EXPECT_EQ(limiter->When("a"), milliseconds(20));
  EXPECT_EQ(limiter->When("b"), milliseconds(5));
  EXPECT_EQ(limiter->NumRequeues("a"), 3);
  limiter->Forget("a");
  EXPECT_EQ(limiter->NumRequeues("a"), 0);
  EXPECT_EQ(limiter->When("a"), milliseconds(5));
}

TEST(DefaultControllerRateLimiterTest, BucketDelaysBeyondTheBurst) {
  std::shared_ptr<RateLimiter<std::string>> limiter = DefaultControllerRateLimiter<std::string>();
  for (int i = 0; i < 100; ++i) limiter->When("item-" + std::to_string(i));
  // The 101st distinct item finds the bucket (nearly) empty: about 100 ms instead of 5 ms.
  EXPECT_GT(limiter->When("last"), milliseconds(50));
}

TEST(RateLimiterConcurrencyTest, CountsEveryCallFromManyThreads) {
  auto limiter = DefaultControllerRateLimiter<std::string>();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) limiter->When("shared");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(limiter->NumRequeues("shared"), 4000);
}

}  // namespace
}  // namespace kvstore::workqueue

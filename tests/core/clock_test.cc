#include "kvstore/clock.h"

#include <gtest/gtest.h>

#include <thread>

namespace kvstore {
namespace {

using namespace std::chrono_literals;

TEST(ClockTest, SystemClockMovesForward) {
  auto clock = SystemClock();
  auto a = clock->Now();
  auto b = clock->Now();
  EXPECT_LE(a, b);
}

TEST(ClockTest, FakeClockOnlyMovesWhenTold) {
  FakeClock clock;
  auto start = clock.Now();
  EXPECT_EQ(clock.Now(), start);
  clock.Advance(5s);
  EXPECT_EQ(clock.Now(), start + 5s);
}

TEST(ClockTest, FakeClockWakesWaiterWhenDeadlinePasses) {
  FakeClock clock;
  std::mutex mu;
  std::condition_variable cv;
  auto deadline = clock.Now() + 10s;
  bool woke = false;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (clock.Now() < deadline) clock.WaitUntil(lock, cv, deadline);
    woke = true;
  });
  // Wait until the waiter sleeps on the clock, then move time in two steps.
  while (clock.NumWaiters() == 0) std::this_thread::yield();
  clock.Advance(5s);
  clock.Advance(5s);
  waiter.join();
  EXPECT_TRUE(woke);
}

TEST(ClockTest, FakeClockPastDeadlineReturnsAtOnce) {
  FakeClock clock;
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  clock.WaitUntil(lock, cv, clock.Now() - 1s);
  EXPECT_TRUE(lock.owns_lock());
  EXPECT_EQ(clock.NumWaiters(), 0u);
}

}  // namespace
}  // namespace kvstore

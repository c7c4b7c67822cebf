// The etcd backend's tasks on the shared executor.
#include "backend/etcd/executor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/backoff.h"
#include "core/guarded.h"
#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "tests/support/eventually.h"

namespace kvstore::etcd {
namespace {

using kvstore::testing::Eventually;

TEST(ExecutorTest, RunsPostedAndDelayedTasks) {
  Executor executor;
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) executor.Post([&] { ++ran; });
  executor.PostAfter(std::chrono::milliseconds(20), [&] { ran += 1000; });
  EXPECT_TRUE(Eventually([&] { return ran.load() == 1100; }));
}

TEST(ExecutorTest, ATaskThatThrowsIsCaughtAndShutdownStillReturns) {
  // Before the catch, the exception ended the process from a pool thread; and a task that left by
  // an exception stayed counted as running, so Shutdown would have waited for it forever.
  auto manual = std::make_shared<ManualExecutor>();
  Executor executor(nullptr, manual);
  const uint64_t before = internal::CaughtExceptions();
  int ran = 0;
  executor.Post([] { throw std::runtime_error("a task of the test"); });
  executor.Post([&] { ++ran; });
  EXPECT_EQ(manual->RunUntilIdle(), 2u);
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(internal::CaughtExceptions(), before + 1);
  executor.Shutdown();  // returns: nothing is counted as running
}

TEST(ExecutorTest, ShutdownDropsPendingTasks) {
  auto clock = std::make_shared<FakeClock>();
  auto manual = std::make_shared<ManualExecutor>();
  std::atomic<int> ran{0};
  {
    Executor executor(clock, manual);
    executor.PostAfter(std::chrono::hours(1), [&] { ++ran; });
    executor.Post([&] { ++ran; });  // queued on the manual executor, not run yet
    executor.Shutdown();
    EXPECT_EQ(clock->NumTimers(), 0u);  // the delayed task's timer was stopped
    executor.Post([&] { ++ran; });
  }
  clock->Advance(std::chrono::hours(2));
  manual->RunUntilIdle();
  EXPECT_EQ(ran.load(), 0);
}

TEST(ExecutorTest, TimersFollowTheClockAndHandTasksToTheExecutor) {
  auto clock = std::make_shared<FakeClock>();
  auto manual = std::make_shared<ManualExecutor>();
  Executor executor(clock, manual);
  EXPECT_EQ(executor.clock(), clock);
  std::vector<int> order;
  auto record = [&](int n) { return [&, n] { order.push_back(n); }; };
  executor.PostAfter(std::chrono::minutes(10), record(10));
  executor.PostAfter(std::chrono::minutes(5), record(5));
  executor.PostAfter(std::chrono::minutes(20), record(20));

  clock->Advance(std::chrono::minutes(5) - std::chrono::seconds(1));
  manual->RunUntilIdle();
  EXPECT_TRUE(order.empty());
  clock->Advance(std::chrono::seconds(1));
  EXPECT_TRUE(order.empty());  // due, handed over, but run by the executor only
  manual->RunUntilIdle();
  EXPECT_EQ(order, std::vector<int>{5});
  clock->Advance(std::chrono::minutes(15));  // both others are due: handed over by deadline
  manual->RunUntilIdle();
  EXPECT_EQ(order, (std::vector<int>{5, 10, 20}));
}

TEST(ExecutorTest, ShutdownWaitsForRunningTasks) {
  Executor executor;
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};
  std::atomic<bool> finished{false};
  executor.Post([&] {
    started = true;
    while (!release) std::this_thread::yield();
    finished = true;
  });
  ASSERT_TRUE(Eventually([&] { return started.load(); }));
  std::thread shutdown([&] { executor.Shutdown(); });
  release = true;
  shutdown.join();
  EXPECT_TRUE(finished.load());
}

TEST(ExecutorTest, ShutdownFromItsOwnTaskDoesNotWaitForIt) {
  auto executor = std::make_shared<Executor>();
  std::atomic<bool> shut_down{false};
  std::weak_ptr<Executor> weak = executor;
  // The task holds the last reference, as an observer holding the backend would, and drops it.
  executor->Post([&shut_down, owner = executor]() mutable {
    owner->Shutdown();
    owner.reset();
    shut_down = true;
  });
  executor.reset();
  ASSERT_TRUE(Eventually([&] { return shut_down.load(); }));
  EXPECT_TRUE(weak.expired());
}

TEST(BackoffTest, CeilingDoublesUpToTheCap) {
  using std::chrono::milliseconds;
  EXPECT_EQ(internal::BackoffCeiling(0, milliseconds(100), milliseconds(1000)), milliseconds(100));
  EXPECT_EQ(internal::BackoffCeiling(2, milliseconds(100), milliseconds(1000)), milliseconds(400));
  EXPECT_EQ(internal::BackoffCeiling(50, milliseconds(100), milliseconds(1000)),
            milliseconds(1000));
}

// Full jitter: every delay lies between zero and its step's ceiling, and the delays of one step
// are spread over that whole interval rather than bunched at one value.
TEST(BackoffTest, DelaysAreSpreadBelowTheCeiling) {
  using std::chrono::milliseconds;
  for (int attempt : {0, 3, 50}) {
    const milliseconds ceiling =
        internal::BackoffCeiling(attempt, milliseconds(100), milliseconds(1000));
    milliseconds lowest = ceiling, highest(0);
    for (int i = 0; i < 2000; ++i) {
      const milliseconds d = internal::BackoffDelay(attempt, milliseconds(100), milliseconds(1000));
      ASSERT_GE(d, milliseconds(0));
      ASSERT_LE(d, ceiling);
      lowest = std::min(lowest, d);
      highest = std::max(highest, d);
    }
    EXPECT_LT(lowest, ceiling / 4) << "attempt " << attempt;
    EXPECT_GT(highest, ceiling * 3 / 4) << "attempt " << attempt;
  }
  internal::Backoff backoff(milliseconds(100), milliseconds(1000));
  for (int i = 0; i < 10; ++i) EXPECT_LE(backoff.Next(), milliseconds(1000));
  EXPECT_EQ(backoff.attempts(), 10);
  backoff.Reset();
  EXPECT_LE(backoff.Next(), milliseconds(100));
}

}  // namespace
}  // namespace kvstore::etcd

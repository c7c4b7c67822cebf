// The etcd backend's small thread pool.
#include "backend/etcd/executor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/backoff.h"
#include "kvstore/clock.h"
#include "tests/support/eventually.h"

namespace kvstore::etcd {
namespace {

using kvstore::testing::Eventually;

TEST(ExecutorTest, RunsPostedAndDelayedTasks) {
  Executor executor(2);
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) executor.Post([&] { ++ran; });
  executor.PostAfter(std::chrono::milliseconds(20), [&] { ran += 1000; });
  EXPECT_TRUE(Eventually([&] { return ran.load() == 1100; }));
}

TEST(ExecutorTest, ShutdownDropsPendingTasks) {
  std::atomic<int> ran{0};
  {
    Executor executor(1);
    executor.PostAfter(std::chrono::hours(1), [&] { ++ran; });
    executor.Shutdown();
    executor.Post([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 0);
}

// Runs on `executor` once everything due by now ran: with one thread, a task due now runs after
// those due earlier.
void RunDueTasks(Executor& executor) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  executor.PostAfter(std::chrono::seconds(0), [done] { *done = true; });
  ASSERT_TRUE(Eventually([&] { return done->load(); }));
}

TEST(ExecutorTest, TimersFollowTheClock) {
  auto clock = std::make_shared<FakeClock>();
  Executor executor(1, clock);
  EXPECT_EQ(executor.clock(), clock);
  std::mutex mu;  // guards order
  std::vector<int> order;
  auto record = [&](int n) {
    return [&, n] {
      std::lock_guard<std::mutex> guard(mu);
      order.push_back(n);
    };
  };
  auto recorded = [&] {
    std::lock_guard<std::mutex> guard(mu);
    return order;
  };
  executor.PostAfter(std::chrono::minutes(10), record(10));
  executor.PostAfter(std::chrono::minutes(5), record(5));
  executor.PostAfter(std::chrono::minutes(20), record(20));

  clock->Advance(std::chrono::minutes(5) - std::chrono::seconds(1));
  RunDueTasks(executor);
  EXPECT_TRUE(recorded().empty());
  clock->Advance(std::chrono::seconds(1));
  RunDueTasks(executor);
  EXPECT_EQ(recorded(), std::vector<int>{5});
  clock->Advance(std::chrono::minutes(15));  // both others are due: they run by deadline
  RunDueTasks(executor);
  EXPECT_EQ(recorded(), (std::vector<int>{5, 10, 20}));
}

TEST(ExecutorTest, IdleThreadsWaitOnTheClock) {
  auto clock = std::make_shared<FakeClock>();
  Executor executor(2, clock);
  std::atomic<bool> ran{false};
  executor.PostAfter(std::chrono::hours(1), [&] { ran = true; });
  // Both threads sleep until the timer is due, on the fake clock rather than on real time.
  ASSERT_TRUE(Eventually([&] { return clock->NumWaiters() == 2; }));
  EXPECT_FALSE(ran.load());
  clock->Advance(std::chrono::hours(1));
  EXPECT_TRUE(Eventually([&] { return ran.load(); }));
}

TEST(ExecutorTest, ShutdownFromATaskLeavesItsThreadToTheDestructor) {
  auto executor = std::make_unique<Executor>(2);
  std::atomic<bool> shut_down{false};
  std::atomic<bool> task_returned{false};
  executor->Post([&] {
    executor->Shutdown();
    shut_down = true;
    // Still running: the pool thread that runs this was not joined by the Shutdown above.
    task_returned = true;
  });
  ASSERT_TRUE(Eventually([&] { return shut_down.load(); }));
  executor->Post([] { FAIL() << "ran after Shutdown"; });
  executor.reset();  // joins the thread that ran the task
  EXPECT_TRUE(task_returned.load());
}

TEST(ExecutorTest, DestroyedByItsOwnTaskItsThreadIsJoinedByTheReaper) {
  auto executor = std::make_shared<Executor>(2);
  std::atomic<bool> destroyed{false};
  std::weak_ptr<Executor> weak = executor;
  // The task holds the last reference, as an observer holding the backend would.
  executor->Post([&destroyed, owner = executor]() mutable {
    owner.reset();
    destroyed = true;
  });
  executor.reset();
  ASSERT_TRUE(Eventually([&] { return destroyed.load(); }));
  EXPECT_TRUE(weak.expired());
  EXPECT_TRUE(Eventually([] { return internal::ThreadReaper::Instance().NumAdopted() == 0; }));
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

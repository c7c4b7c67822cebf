#include "kvstore/executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/task.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "tests/support/eventually.h"

namespace kvstore {
namespace {

using namespace std::chrono_literals;

TEST(ExecutorTest, DefaultExecutorRunsPostedTasksOnItsOwnThreads) {
  std::shared_ptr<Executor> executor = DefaultExecutor();
  ASSERT_NE(executor, nullptr);
  EXPECT_GE(DefaultExecutorThreads(), 2u);
  std::promise<std::thread::id> ran_on;
  executor->Post([&] { ran_on.set_value(std::this_thread::get_id()); });
  std::future<std::thread::id> id = ran_on.get_future();
  ASSERT_EQ(id.wait_for(20s), std::future_status::ready);
  EXPECT_NE(id.get(), std::this_thread::get_id());
}

TEST(ExecutorTest, DefaultExecutorIsOnePoolForTheProcess) {
  EXPECT_EQ(DefaultExecutor().get(), DefaultExecutor().get());
}

// Calls that block take the blocking pool up to its limit; beyond it calls wait (the pool stops
// watching for stalls there), and each runs as soon as a thread is free again.
TEST(ExecutorTest, BlockingPoolGrowsToItsLimitAndRunsWaitingCallsOnceThreadsFree) {
  Executor& pool = internal::BlockingPool();
  const int limit = static_cast<int>(internal::BlockingPoolThreads());
  // Shared with the tasks, which may still be returning (or, after a failed wait, blocked) once
  // the test has returned: nothing of theirs lives on the test's stack.
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool release = false;
    std::atomic<int> running{0}, done{0};
  };
  auto state = std::make_shared<State>();
  auto blocking = [state] {
    ++state->running;
    {
      std::unique_lock<std::mutex> lock(state->mu);
      state->cv.wait(lock, [&] { return state->release; });
    }
    ++state->done;  // last: the test may return once it sees every task done
  };
  for (int i = 0; i < limit + 3; ++i) pool.Post(blocking);
  const bool all_blocked = testing::Eventually([&] { return state->running.load() == limit; }, 20s);
  EXPECT_TRUE(all_blocked);
  EXPECT_EQ(state->done.load(), 0);
  {
    std::lock_guard<std::mutex> guard(state->mu);
    state->release = true;
  }
  state->cv.notify_all();
  ASSERT_TRUE(testing::Eventually([&] { return state->done.load() == limit + 3; }, 20s));
  EXPECT_EQ(state->running.load(), limit + 3);
}

TEST(StrandTest, RunsTasksOneAtATimeInPostOrder) {
  Strand strand;
  constexpr int kTasks = 2000;
  std::vector<int> order;  // only touched by the strand's tasks
  std::atomic<int> running{0};
  std::atomic<bool> overlapped{false};
  std::promise<void> done;
  // Posted from several threads: each thread's own tasks keep their order.
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kTasks / 4; ++i) {
        strand.Post([&, value = t * kTasks + i] {
          if (running.fetch_add(1) != 0) overlapped = true;
          EXPECT_TRUE(strand.RunningInThisThread());
          order.push_back(value);
          running.fetch_sub(1);
          // Last: once the test thread wakes it destroys everything this task refers to.
          if (order.size() == kTasks) done.set_value();
        });
      }
    });
  }
  for (std::thread& poster : posters) poster.join();
  ASSERT_EQ(done.get_future().wait_for(20s), std::future_status::ready);
  EXPECT_FALSE(overlapped);
  EXPECT_FALSE(strand.RunningInThisThread());
  std::vector<int> last(4, -1);
  for (int value : order) {
    int t = value / kTasks;
    EXPECT_GT(value, last[t]) << "thread " << t << "'s tasks out of order";
    last[t] = value;
  }
}

TEST(StrandTest, TasksPostedBeforeTheStrandIsDestroyedStillRun) {
  std::promise<void> ran;
  {
    Strand strand;
    strand.Post([&] { ran.set_value(); });
  }
  EXPECT_EQ(ran.get_future().wait_for(20s), std::future_status::ready);
}

TEST(StrandTest, ManyStrandsShareTheFixedPool) {
  // A thousand strands, each with a task that records its thread: they all run on the pool.
  constexpr int kStrands = 1000;
  std::vector<std::unique_ptr<Strand>> strands;
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::atomic<int> left{kStrands};
  std::promise<void> done;
  for (int i = 0; i < kStrands; ++i) {
    strands.push_back(std::make_unique<Strand>());
    strands.back()->Post([&] {
      {
        std::lock_guard lock(mu);
        threads.insert(std::this_thread::get_id());
      }
      if (left.fetch_sub(1) == 1) done.set_value();
    });
  }
  ASSERT_EQ(done.get_future().wait_for(20s), std::future_status::ready);
  std::lock_guard lock(mu);
  EXPECT_LE(threads.size(), DefaultExecutorThreads());
}

TEST(StrandTest, RunsOnAGivenExecutor) {
  auto manual = std::make_shared<ManualExecutor>();
  Strand strand(manual);
  std::vector<int> order;
  strand.Post([&] { order.push_back(1); });
  strand.Post([&] {
    order.push_back(2);
    strand.Post([&] { order.push_back(3); });
  });
  EXPECT_TRUE(order.empty());
  manual->RunUntilIdle();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(ManualExecutorTest, RunsNothingUntilTold) {
  ManualExecutor executor;
  int runs = 0;
  executor.Post([&] { ++runs; });
  executor.Post([&] {
    ++runs;
    executor.Post([&] { ++runs; });
  });
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(executor.Pending(), 2u);
  EXPECT_TRUE(executor.RunOne());
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(executor.RunUntilIdle(), 2u);
  EXPECT_EQ(runs, 3);
  EXPECT_FALSE(executor.RunOne());
}

TEST(ManualExecutorTest, DestroysUnrunTasks) {
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> weak = token;
  {
    ManualExecutor executor;
    executor.Post([token = std::move(token)] {});
  }
  EXPECT_TRUE(weak.expired());
}

TEST(TimerTest, FakeClockRunsTimersInDeadlineOrderWhenTimeMoves) {
  FakeClock clock;
  const Clock::time_point start = clock.Now();
  std::vector<std::pair<int, Clock::duration>> fired;
  clock.AfterFunc(3s, [&] { fired.emplace_back(3, clock.Now() - start); });
  clock.AfterFunc(1s, [&] { fired.emplace_back(1, clock.Now() - start); });
  Timer stopped = clock.AfterFunc(2s, [&] { fired.emplace_back(2, clock.Now() - start); });
  EXPECT_EQ(clock.NumTimers(), 3u);
  EXPECT_EQ(clock.NextTimer(), start + 1s);
  EXPECT_TRUE(stopped.Stop());
  EXPECT_FALSE(stopped.Stop());
  clock.Advance(500ms);
  EXPECT_TRUE(fired.empty());
  clock.Advance(10s);
  ASSERT_EQ(fired.size(), 2u);
  // Each runs with the clock at its own deadline.
  EXPECT_EQ(fired[0], std::make_pair(1, Clock::duration(1s)));
  EXPECT_EQ(fired[1], std::make_pair(3, Clock::duration(3s)));
  EXPECT_EQ(clock.Now(), start + 10s + 500ms);
  EXPECT_EQ(clock.NumTimers(), 0u);
}

TEST(TimerTest, FakeClockRunsTimersThatTimersSetWithinTheSameMove) {
  FakeClock clock;
  int fired = 0;
  clock.AfterFunc(1s, [&] {
    ++fired;
    clock.AfterFunc(1s, [&] { ++fired; });
    clock.AfterFunc(10s, [&] { ++fired; });
  });
  clock.Advance(5s);
  EXPECT_EQ(fired, 2);
  EXPECT_EQ(clock.NumTimers(), 1u);
}

TEST(TimerTest, StopAfterTheCallReturnsFalse) {
  FakeClock clock;
  int fired = 0;
  Timer timer = clock.AfterFunc(0s, [&] { ++fired; });
  clock.Advance(0s);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer.Stop());
  EXPECT_FALSE(Timer().Stop());
}

TEST(TimerTest, SystemClockTimersFireOnceOnTheTimerThread) {
  std::promise<std::thread::id> fired;
  SystemClock()->AfterFunc(1ms, [&] { fired.set_value(std::this_thread::get_id()); });
  std::future<std::thread::id> id = fired.get_future();
  ASSERT_EQ(id.wait_for(20s), std::future_status::ready);
  EXPECT_NE(id.get(), std::this_thread::get_id());
}

TEST(TimerTest, StoppedSystemClockTimerNeverFires) {
  std::atomic<bool> fired{false};
  Timer timer = SystemClock()->AfterFunc(1h, [&] { fired = true; });
  EXPECT_TRUE(timer.Stop());
  // A later timer fires: the stopped one, due far later, was not run on the way.
  std::promise<void> later;
  SystemClock()->AfterFunc(1ms, [&] { later.set_value(); });
  ASSERT_EQ(later.get_future().wait_for(20s), std::future_status::ready);
  EXPECT_FALSE(fired);
}

TEST(TimerTest, FakeClockWallTimeMovesWithIt) {
  FakeClock clock;
  const auto wall = clock.WallNow();
  clock.Advance(90s);
  EXPECT_EQ(clock.WallNow() - wall, std::chrono::seconds(90));
}

TEST(ClockContextTest, FakeClockEndsTheContextAtItsDeadline) {
  auto clock = std::make_shared<FakeClock>();
  auto [ctx, cancel] = WithTimeout(Context::Background(), 10s, clock);
  int callbacks = 0;
  ctx.AddCallback([&] { ++callbacks; });
  EXPECT_FALSE(ctx.Done());
  clock->Advance(9s);
  EXPECT_FALSE(ctx.Done());
  EXPECT_EQ(callbacks, 0);
  clock->Advance(1s);
  EXPECT_TRUE(ctx.Done());
  EXPECT_EQ(ctx.Err().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(callbacks, 1);  // run by the Advance that passed the deadline
  cancel();
  EXPECT_EQ(ctx.Err().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ClockContextTest, ChildOfAFakeDeadlineEndsWithIt) {
  auto clock = std::make_shared<FakeClock>();
  auto [parent, cancel_parent] = WithDeadline(Context::Background(), clock->Now() + 5s, clock);
  auto [child, cancel_child] = WithTimeout(parent, 1h, clock);
  EXPECT_EQ(child.Deadline(), parent.Deadline());
  auto [plain, cancel_plain] = WithCancel(parent);
  clock->Advance(5s);
  EXPECT_TRUE(child.Done());
  EXPECT_TRUE(plain.Done());
  EXPECT_EQ(plain.Err().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ClockContextTest, WaitOnAFakeDeadlineEndsWhenTimeMoves) {
  auto clock = std::make_shared<FakeClock>();
  auto [ctx, cancel] = WithTimeout(Context::Background(), 1s, clock);
  std::mutex mu;
  std::condition_variable cv;
  std::promise<bool> result;
  std::thread waiter([&, ctx = ctx] {
    std::unique_lock lock(mu);
    result.set_value(ctx.WaitOn(lock, cv, [] { return false; }));
  });
  std::future<bool> waited = result.get_future();
  // Nothing ends the wait but the fake clock: not real time passing.
  EXPECT_EQ(waited.wait_for(50ms), std::future_status::timeout);
  clock->Advance(1s);
  ASSERT_EQ(waited.wait_for(20s), std::future_status::ready);
  EXPECT_FALSE(waited.get());
  waiter.join();
}

TEST(ClockContextTest, StoppingTheContextStopsItsTimer) {
  auto clock = std::make_shared<FakeClock>();
  {
    auto [ctx, cancel] = WithTimeout(Context::Background(), 1h, clock);
    EXPECT_EQ(clock->NumTimers(), 1u);
    cancel();
    EXPECT_EQ(clock->NumTimers(), 0u);
  }
  {
    auto [ctx, cancel] = WithTimeout(Context::Background(), 1h, clock);
    EXPECT_EQ(clock->NumTimers(), 1u);
  }
  // Dropped without a cancel: the timer goes with the context.
  EXPECT_EQ(clock->NumTimers(), 0u);
}

}  // namespace
}  // namespace kvstore

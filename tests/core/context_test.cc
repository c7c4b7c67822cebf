#include "kvstore/context.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iterator>
#include <thread>

#include "tests/support/eventually.h"

namespace kvstore {
namespace {

using namespace std::chrono_literals;

TEST(ContextTest, BackgroundIsNeverDone) {
  Context ctx;
  EXPECT_FALSE(ctx.Done());
  EXPECT_TRUE(ctx.Err().ok());
  EXPECT_FALSE(ctx.Deadline().has_value());
  EXPECT_FALSE(Context::Background().WaitFor(1ms));
}

TEST(ContextTest, CancelMakesDoneWithCancelled) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  EXPECT_FALSE(ctx.Done());
  cancel();
  EXPECT_TRUE(ctx.Done());
  EXPECT_EQ(ctx.Err().code(), absl::StatusCode::kCancelled);
  cancel();  // idempotent
  EXPECT_EQ(ctx.Err().code(), absl::StatusCode::kCancelled);
}

TEST(ContextTest, ChildFollowsParentButNotTheOtherWay) {
  auto [parent, cancel_parent] = WithCancel(Context::Background());
  auto [child, cancel_child] = WithCancel(parent);
  auto [sibling, cancel_sibling] = WithCancel(parent);
  cancel_child();
  EXPECT_TRUE(child.Done());
  EXPECT_FALSE(parent.Done());
  EXPECT_FALSE(sibling.Done());
  cancel_parent();
  EXPECT_TRUE(sibling.Done());
  EXPECT_EQ(sibling.Err().code(), absl::StatusCode::kCancelled);
}

TEST(ContextTest, ChildOfDoneParentIsDoneAtOnce) {
  auto [parent, cancel] = WithCancel(Context::Background());
  cancel();
  auto [child, cancel_child] = WithCancel(parent);
  EXPECT_TRUE(child.Done());
}

TEST(ContextTest, TimeoutEndsWithDeadlineExceeded) {
  auto [ctx, cancel] = WithTimeout(Context::Background(), 20ms);
  ASSERT_TRUE(ctx.Deadline().has_value());
  EXPECT_TRUE(ctx.WaitFor(10s));
  EXPECT_EQ(ctx.Err().code(), absl::StatusCode::kDeadlineExceeded);
  cancel();  // keeps the first reason
  EXPECT_EQ(ctx.Err().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ContextTest, ChildInheritsEarlierParentDeadline) {
  auto [parent, cancel_parent] = WithTimeout(Context::Background(), 1h);
  auto [child, cancel_child] = WithTimeout(parent, 2h);
  EXPECT_EQ(child.Deadline(), parent.Deadline());
  auto [grandchild, cancel_grandchild] = WithCancel(child);
  EXPECT_EQ(grandchild.Deadline(), parent.Deadline());
}

TEST(ContextTest, ParentTimeoutPropagatesReason) {
  auto [parent, cancel_parent] = WithTimeout(Context::Background(), 10ms);
  auto [child, cancel_child] = WithCancel(parent);
  EXPECT_TRUE(child.WaitFor(10s));
  EXPECT_EQ(child.Err().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ContextTest, CallbackRunsOnceWhenDone) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  std::atomic<int> calls = 0;
  uint64_t id = ctx.AddCallback([&] { ++calls; });
  EXPECT_NE(id, 0u);
  cancel();
  cancel();
  EXPECT_EQ(calls, 1);
  // Registered after done: runs at once.
  EXPECT_EQ(ctx.AddCallback([&] { ++calls; }), 0u);
  EXPECT_EQ(calls, 2);
}

TEST(ContextTest, RemovedCallbackDoesNotRun) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  bool called = false;
  uint64_t id = ctx.AddCallback([&] { called = true; });
  ctx.RemoveCallback(id);
  cancel();
  EXPECT_FALSE(called);
}

TEST(ContextTest, TimeoutRunsCallbackWithoutAnyoneAsking) {
  auto [ctx, cancel] = WithTimeout(Context::Background(), 10ms);
  std::mutex mu;
  std::condition_variable cv;
  bool called = false;
  ScopedContextCallback callback(ctx, [&] {
    std::lock_guard<std::mutex> guard(mu);
    called = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, 10s, [&] { return called; }));
}

size_t ThreadsOfThisProcess() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                           std::filesystem::directory_iterator()));
}

// The thread that fires deadlines exists only while some are pending (plus a short linger): a
// library that used a timeout once does not keep a thread for the rest of the process.
TEST(ContextTest, DeadlineThreadEndsWhenNoDeadlineIsPending) {
  size_t with_deadline = 0;
  {
    // A pending deadline: the thread that will fire it runs.
    auto [ctx, cancel] = WithTimeout(Context::Background(), 1h);
    with_deadline = ThreadsOfThisProcess();
  }
  EXPECT_TRUE(testing::Eventually([&] { return ThreadsOfThisProcess() < with_deadline; }));
  // And it comes back for the next deadline.
  auto [ctx, cancel] = WithTimeout(Context::Background(), 5ms);
  std::atomic<bool> fired{false};
  ctx.AddCallback([&] { fired = true; });
  EXPECT_TRUE(testing::Eventually([&] { return fired.load(); }));
}

TEST(ContextTest, WaitOnWakesWhenCancelledFromAnotherThread) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  std::mutex mu;
  std::condition_variable cv;
  std::thread canceller([cancel = cancel] { cancel(); });
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_FALSE(ctx.WaitOn(lock, cv, [] { return false; }));
  lock.unlock();
  canceller.join();
}

TEST(ContextTest, WaitOnReturnsWhenPredicateHolds) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::thread setter([&] {
    std::lock_guard<std::mutex> guard(mu);
    ready = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(ctx.WaitOn(lock, cv, [&] { return ready; }));
  lock.unlock();
  setter.join();
  EXPECT_FALSE(ctx.Done());
}

// A deadline that passes while WaitOn holds the waiter's lock must end the wait, not deadlock on
// the wake-up callback that takes that same lock.
TEST(ContextTest, WaitOnEndsAtDeadline) {
  for (int i = 0; i < 200; ++i) {
    auto [ctx, cancel] = WithTimeout(Context::Background(), std::chrono::microseconds(i % 20));
    std::mutex mu;
    std::condition_variable cv;
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_FALSE(ctx.WaitOn(lock, cv, [] { return false; }));
    EXPECT_EQ(ctx.Err().code(), absl::StatusCode::kDeadlineExceeded);
  }
}

TEST(ContextTest, CancelAfterPassedDeadlineKeepsDeadlineReason) {
  auto [ctx, cancel] = WithTimeout(Context::Background(), 1us);
  while (!ctx.Done()) std::this_thread::yield();
  cancel();
  EXPECT_EQ(ctx.Err().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(ContextTest, WaitForReturnsEarlyOnCancel) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  std::thread canceller([cancel = cancel] { cancel(); });
  EXPECT_TRUE(ctx.WaitFor(1h));
  canceller.join();
}

TEST(ContextTest, CopiesShareStateAndAreAssignable) {
  Context ctx;
  CancelFunc cancel;
  std::tie(ctx, cancel) = WithCancel(Context::Background());
  Context copy = ctx;
  cancel();
  EXPECT_TRUE(copy.Done());
}

// Four threads each add a callback that counts its runs, then cancel, then (with `remove`)
// remove their callback; returns the runs counted.
int ConcurrentCancels(bool remove) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  std::atomic<int> calls = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, cancel = cancel] {
      uint64_t id = ctx.AddCallback([&] { ++calls; });
      cancel();
      if (remove) ctx.RemoveCallback(id);
    });
  }
  for (auto& t : threads) t.join();
  return calls;
}

TEST(ContextTest, ManyConcurrentCancelsAndCallbacks) {
  for (int round = 0; round < 50; ++round) {
    EXPECT_EQ(ConcurrentCancels(/*remove=*/false), 4) << "every callback runs once";
  }
}

TEST(ContextTest, ConcurrentRemovalsDropOnlyCallbacksNotRunYet) {
  for (int round = 0; round < 50; ++round) {
    // The thread that cancelled ran every callback not removed yet, its own among them, before
    // its cancel() returned; another thread's removal may drop one that had not run.
    const int calls = ConcurrentCancels(/*remove=*/true);
    EXPECT_GE(calls, 1);
    EXPECT_LE(calls, 4);
  }
}

}  // namespace
}  // namespace kvstore

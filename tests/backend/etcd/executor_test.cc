// The etcd backend's small thread pool.
#include "backend/etcd/executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/backoff.h"

namespace kvstore::etcd {
namespace {

TEST(ExecutorTest, RunsPostedAndDelayedTasks) {
  Executor executor(2);
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) executor.Post([&] { ++ran; });
  executor.PostAfter(std::chrono::milliseconds(20), [&] { ran += 1000; });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ran.load() != 1100 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(ran.load(), 1100);
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

TEST(BackoffTest, DoublesUpToTheCap) {
  using std::chrono::milliseconds;
  EXPECT_EQ(internal::BackoffDelay(0, milliseconds(100), milliseconds(1000)), milliseconds(100));
  EXPECT_EQ(internal::BackoffDelay(2, milliseconds(100), milliseconds(1000)), milliseconds(400));
  EXPECT_EQ(internal::BackoffDelay(50, milliseconds(100), milliseconds(1000)), milliseconds(1000));
}

}  // namespace
}  // namespace kvstore::etcd

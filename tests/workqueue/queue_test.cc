#include "kvstore/workqueue/queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "kvstore/context.h"

namespace kvstore::workqueue {
namespace {

using ::testing::ElementsAre;

// Fails the test instead of hanging it when no item arrives.
template <typename T>
std::optional<T> GetOrTimeOut(Queue<T>& queue) {
  auto [ctx, cancel] = WithTimeout(Context(), std::chrono::seconds(30));
  std::optional<T> item = queue.Get(ctx);
  cancel();
  return item;
}

TEST(QueueTest, WaitingItemIsNotAddedTwice) {
  Queue<std::string> queue;
  queue.Add("a");
  queue.Add("b");
  queue.Add("a");
  EXPECT_EQ(queue.Len(), 2u);
  EXPECT_EQ(queue.Get(), "a");
  EXPECT_EQ(queue.Get(), "b");
  EXPECT_EQ(queue.Len(), 0u);
}

TEST(QueueTest, ItemAddedWhileProcessingIsQueuedOnceOnDone) {
  Queue<std::string> queue;
  queue.Add("a");
  ASSERT_EQ(queue.Get(), "a");
  queue.Add("a");
  queue.Add("a");
  EXPECT_EQ(queue.Len(), 0u) << "an item being processed must not be handed out again";
  queue.Done("a");
  EXPECT_EQ(queue.Len(), 1u);
  ASSERT_EQ(queue.Get(), "a");
  queue.Done("a");
  EXPECT_EQ(queue.Len(), 0u);
}

TEST(QueueTest, DoneWithoutReAddDoesNotRequeue) {
  Queue<std::string> queue;
  queue.Add("a");
  ASSERT_EQ(queue.Get(), "a");
  queue.Done("a");
  queue.Done("never-added");
  EXPECT_EQ(queue.Len(), 0u);
  queue.Add("a");
  EXPECT_EQ(queue.Len(), 1u);
}

TEST(QueueTest, HandsOutItemsInFifoOrder) {
  Queue<int> queue;
  for (int i = 0; i < 100; ++i) queue.Add(i);
  for (int i = 0; i < 100; ++i) {
    std::optional<int> item = queue.Get();
    ASSERT_EQ(item, i);
    queue.Done(*item);
  }
}

TEST(QueueTest, ManyProducersAndConsumersProcessEveryItemNeverTwiceAtOnce) {
  constexpr int kProducers = 4;
  constexpr int kConsumers = 4;
  constexpr int kItems = 500;
  Queue<std::string> queue;

  std::mutex mu;
  std::unordered_set<std::string> in_flight;
  std::unordered_set<std::string> processed;
  std::atomic<int> overlaps{0};

  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&] {
      while (std::optional<std::string> item = queue.Get()) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!in_flight.insert(*item).second) ++overlaps;
        }
        std::this_thread::yield();
        {
          std::lock_guard<std::mutex> lock(mu);
          in_flight.erase(*item);
          processed.insert(*item);
        }
        queue.Done(*item);
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&] {
      // Every item is added by every producer, so adds race with processing of the same item.
      for (int i = 0; i < kItems; ++i) queue.Add("item-" + std::to_string(i));
    });
  }
  for (auto& t : producers) t.join();
  queue.ShutDown();
  for (auto& t : consumers) t.join();

  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(processed.size(), static_cast<size_t>(kItems));
  EXPECT_EQ(queue.Len(), 0u);
}

TEST(QueueTest, ShutDownHandsOutRemainingItemsThenNullopt) {
  Queue<std::string> queue;
  queue.Add("a");
  queue.Add("b");
  queue.ShutDown();
  EXPECT_TRUE(queue.ShuttingDown());
  queue.Add("c");
  EXPECT_EQ(queue.Len(), 2u);
  EXPECT_EQ(queue.Get(), "a");
  EXPECT_EQ(queue.Get(), "b");
  EXPECT_EQ(queue.Get(), std::nullopt);
  EXPECT_EQ(queue.Get(), std::nullopt);
}

TEST(QueueTest, ShutDownWakesBlockedGet) {
  Queue<std::string> queue;
  std::optional<std::optional<std::string>> result;
  std::thread getter([&] { result = queue.Get(); });
  queue.ShutDown();
  getter.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(*result, std::nullopt);
}

TEST(QueueTest, ShutDownDoesNotWaitForItemsBeingProcessed) {
  Queue<std::string> queue;
  queue.Add("a");
  ASSERT_EQ(queue.Get(), "a");
  queue.ShutDown();  // returns although "a" is not Done
  EXPECT_TRUE(queue.ShuttingDown());
  queue.Done("a");
}

TEST(QueueTest, ShutDownWithDrainWaitsForDone) {
  Queue<std::string> queue;
  queue.Add("a");
  queue.Add("b");
  ASSERT_EQ(queue.Get(), "a");
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    queue.ShutDownWithDrain();
    drained = true;
  });
  while (!queue.ShuttingDown()) std::this_thread::yield();
  EXPECT_FALSE(drained.load()) << "drain returned while an item was being processed";
  // Waiting items are still handed out while draining.
  ASSERT_EQ(queue.Get(), "b");
  queue.Done("a");
  EXPECT_FALSE(drained.load()) << "drain returned while an item was being processed";
  queue.Done("b");
  drainer.join();
  EXPECT_TRUE(drained.load());
  EXPECT_EQ(queue.Get(), std::nullopt);
}

TEST(QueueTest, ShutDownWithDrainReturnsAtOnceWhenNothingIsProcessing) {
  Queue<std::string> queue;
  queue.ShutDownWithDrain();
  EXPECT_TRUE(queue.ShuttingDown());
  EXPECT_EQ(queue.Get(), std::nullopt);
}

TEST(QueueTest, ShutDownEndsAPendingDrain) {
  Queue<std::string> queue;
  queue.Add("a");
  ASSERT_EQ(queue.Get(), "a");
  std::thread drainer([&] { queue.ShutDownWithDrain(); });
  while (!queue.ShuttingDown()) std::this_thread::yield();
  queue.ShutDown();
  drainer.join();  // would hang if ShutDown did not end the drain
  queue.Done("a");
}

TEST(QueueTest, GetWithDoneContextReturnsNullopt) {
  Queue<std::string> queue;
  queue.Add("a");
  auto [ctx, cancel] = WithCancel(Context());
  cancel();
  EXPECT_EQ(queue.Get(ctx), std::nullopt);
  EXPECT_EQ(queue.Len(), 1u) << "a cancelled Get must not take an item";
}

TEST(QueueTest, CancelWakesBlockedGet) {
  Queue<std::string> queue;
  auto [ctx, cancel] = WithCancel(Context());
  std::optional<std::optional<std::string>> result;
  std::thread getter([&, ctx = ctx] { result = queue.Get(ctx); });
  cancel();
  getter.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(*result, std::nullopt);
  EXPECT_FALSE(queue.ShuttingDown());
}

TEST(QueueTest, GetWithContextReturnsItemAddedLater) {
  Queue<std::string> queue;
  std::optional<std::string> result;
  std::thread getter([&] { result = GetOrTimeOut(queue); });
  queue.Add("a");
  getter.join();
  EXPECT_EQ(result, "a");
}

TEST(QueueTest, GetBatchTakesUpToMaxInOrder) {
  Queue<std::string> queue;
  for (const char* item : {"a", "b", "c", "d", "e"}) queue.Add(item);
  EXPECT_THAT(queue.GetBatch(Context(), 3), ElementsAre("a", "b", "c"));
  EXPECT_EQ(queue.Len(), 2u);
  queue.Add("a");  // being processed: queued again only by Done
  EXPECT_EQ(queue.Len(), 2u);
  EXPECT_THAT(queue.GetBatch(Context(), 0), ElementsAre("d"));
  EXPECT_THAT(queue.GetBatch(Context(), 10), ElementsAre("e"));
  queue.Done("a");
  EXPECT_THAT(queue.GetBatch(Context(), 10), ElementsAre("a"));
  queue.ShutDown();
  EXPECT_TRUE(queue.GetBatch(Context(), 10).empty());
}

TEST(QueueTest, LengthHookSeesEveryChangeInOrder) {
  std::vector<size_t> lengths;  // the hook runs under the queue's mutex: no extra lock needed
  Queue<std::string> queue(QueueOptions{
      .on_length_change = [&](size_t len) { lengths.push_back(len); },
  });
  queue.Add("a");                // 1
  queue.Add("b");                // 2
  queue.Add("a");                // already waiting: no change
  queue.Get();                   // 1 ("a" processing)
  queue.Add("a");                // dirty while processing: no change
  queue.Done("a");               // 2 (re-queued)
  queue.Done("x");               // unknown: no change
  queue.GetBatch(Context(), 2);  // 0
  EXPECT_THAT(lengths, ElementsAre(1, 2, 1, 2, 0));
  EXPECT_EQ(lengths.back(), queue.Len());
}

}  // namespace
}  // namespace kvstore::workqueue

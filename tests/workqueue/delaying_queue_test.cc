#include "kvstore/workqueue/delaying_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "kvstore/clock.h"
#include "kvstore/context.h"

namespace kvstore::workqueue {
namespace {

using std::chrono::seconds;

// Fails the test instead of hanging it when no item arrives.
std::optional<std::string> GetOrTimeOut(Queue<std::string>& queue) {
  auto [ctx, cancel] = WithTimeout(Context(), seconds(30));
  std::optional<std::string> item = queue.Get(ctx);
  cancel();
  return item;
}

class DelayingQueueTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  DelayingQueue<std::string> queue_{clock_};
};

TEST_F(DelayingQueueTest, NonPositiveDelayAddsAtOnce) {
  queue_.AddAfter("a", seconds(0));
  queue_.AddAfter("b", seconds(-1));
  EXPECT_EQ(queue_.Len(), 2u);
  EXPECT_EQ(queue_.Get(), "a");
  EXPECT_EQ(queue_.Get(), "b");
}

TEST_F(DelayingQueueTest, ItemsBecomeReadyInReadyTimeOrder) {
  queue_.AddAfter("a", seconds(3));
  queue_.AddAfter("b", seconds(1));
  queue_.AddAfter("c", seconds(2));
  EXPECT_EQ(queue_.Len(), 0u);

  clock_->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue_), "b");
  EXPECT_EQ(queue_.Len(), 0u);

  clock_->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue_), "c");
  EXPECT_EQ(queue_.Len(), 0u);

  clock_->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue_), "a");
}

TEST_F(DelayingQueueTest, ItemsDueTogetherAreQueuedInReadyTimeOrder) {
  queue_.AddAfter("late", seconds(5));
  queue_.AddAfter("first", seconds(1));
  queue_.AddAfter("second", seconds(1));
  queue_.AddAfter("middle", seconds(3));
  clock_->Advance(seconds(10));
  EXPECT_EQ(GetOrTimeOut(queue_), "first");
  EXPECT_EQ(GetOrTimeOut(queue_), "second");
  EXPECT_EQ(GetOrTimeOut(queue_), "middle");
  EXPECT_EQ(GetOrTimeOut(queue_), "late");
}

TEST_F(DelayingQueueTest, EarlierReadyTimeMovesDelayedItemForward) {
  queue_.AddAfter("a", seconds(5));
  queue_.AddAfter("a", seconds(1));
  queue_.AddAfter("marker", seconds(5));
  clock_->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue_), "a");
  queue_.Done("a");

  clock_->Advance(seconds(4));
  // The loop queues every due item in one sweep, so a second "a" would precede the marker.
  EXPECT_EQ(GetOrTimeOut(queue_), "marker");
  EXPECT_EQ(queue_.Len(), 0u) << "the replaced ready time must not add the item again";
}

TEST_F(DelayingQueueTest, LaterReadyTimeKeepsTheEarlierOne) {
  queue_.AddAfter("a", seconds(1));
  queue_.AddAfter("a", seconds(5));
  clock_->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue_), "a");
  queue_.Done("a");

  queue_.AddAfter("marker", seconds(4));
  clock_->Advance(seconds(4));
  EXPECT_EQ(GetOrTimeOut(queue_), "marker");
  EXPECT_EQ(queue_.Len(), 0u);
}

TEST_F(DelayingQueueTest, DelayedItemAlreadyWaitingIsNotAddedTwice) {
  queue_.Add("a");
  queue_.AddAfter("a", seconds(1));
  queue_.AddAfter("marker", seconds(1));
  clock_->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue_), "a");
  EXPECT_EQ(GetOrTimeOut(queue_), "marker");
  EXPECT_EQ(queue_.Len(), 0u);
}

TEST_F(DelayingQueueTest, HugeDelayDoesNotOverflow) {
  queue_.AddAfter("never", std::chrono::nanoseconds::max());
  queue_.AddAfter("soon", seconds(1));
  clock_->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue_), "soon");
  EXPECT_EQ(queue_.Len(), 0u);
}

TEST_F(DelayingQueueTest, ShutDownDropsDelayedItems) {
  queue_.Add("now");
  queue_.AddAfter("later", seconds(1));
  queue_.ShutDown();
  queue_.AddAfter("after-shutdown", seconds(0));
  queue_.AddAfter("after-shutdown-delayed", seconds(1));
  clock_->Advance(seconds(10));
  EXPECT_EQ(queue_.Get(), "now");
  EXPECT_EQ(queue_.Get(), std::nullopt);
}

TEST_F(DelayingQueueTest, ShutDownWithDrainDropsDelayedItemsAndWaitsForDone) {
  queue_.Add("a");
  ASSERT_EQ(queue_.Get(), "a");
  queue_.AddAfter("later", seconds(1));
  std::thread drainer([&] { queue_.ShutDownWithDrain(); });
  while (!queue_.ShuttingDown()) std::this_thread::yield();
  clock_->Advance(seconds(10));
  queue_.Done("a");
  drainer.join();
  EXPECT_EQ(queue_.Get(), std::nullopt);
}

TEST(DelayingQueueLifetimeTest, DestructorStopsTheLoopWithItemsPending) {
  auto clock = std::make_shared<FakeClock>();
  {
    DelayingQueue<int> queue(clock);
    queue.AddAfter(1, seconds(5));
  }
  {
    DelayingQueue<int> queue;  // system clock
    queue.AddAfter(1, std::chrono::hours(1));
    queue.ShutDown();
    queue.ShutDown();  // twice is fine
  }
  SUCCEED();
}

TEST(DelayingQueueLifetimeTest, LengthHookCountsOnlyWaitingItems) {
  auto clock = std::make_shared<FakeClock>();
  std::vector<size_t> lengths;
  DelayingQueue<std::string> queue(
      clock, QueueOptions{.on_length_change = [&](size_t len) { lengths.push_back(len); }});
  queue.AddAfter("a", seconds(1));
  EXPECT_EQ(queue.Len(), 0u);
  clock->Advance(seconds(1));
  EXPECT_EQ(GetOrTimeOut(queue), "a");
  queue.ShutDown();
  EXPECT_EQ(lengths, (std::vector<size_t>{1, 0}));
}

}  // namespace
}  // namespace kvstore::workqueue

#include "kvstore/events.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/watcher_producer.h"

namespace kvstore {
namespace {

using namespace std::chrono_literals;

KeyValueEvent Create(std::string key, std::string value) {
  return KeyValueEvent{EventType::kCreate, std::move(key), std::move(value)};
}

TEST(WatcherTest, DeliversBufferedEventsBeforeClosed) {
  Watcher w("p/", 4);
  EXPECT_EQ(w.Prefix(), "p/");
  ASSERT_TRUE(w.Emit(Create("p/a", "1"), Context()));
  ASSERT_TRUE(w.Emit(Create("p/b", "2"), Context()));
  w.Close();
  EXPECT_FALSE(w.Emit(Create("p/c", "3"), Context()));
  EXPECT_EQ(w.Next(), Create("p/a", "1"));
  EXPECT_FALSE(internal::WatcherProducer(w).Closed());
  EXPECT_EQ(w.Next(), Create("p/b", "2"));
  EXPECT_EQ(w.Next(), std::nullopt);
  EXPECT_TRUE(internal::WatcherProducer(w).Closed());
}

TEST(WatcherTest, NextBatchHandsOverEverythingBufferedInOrder) {
  Watcher w("p/", 4);
  ASSERT_TRUE(w.Emit(Create("p/a", "1"), Context()));
  ASSERT_TRUE(w.Emit(Create("p/b", "2"), Context()));
  std::deque<KeyValueEvent> batch;
  ASSERT_TRUE(w.NextBatch(Context(), &batch));
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0], Create("p/a", "1"));
  EXPECT_EQ(batch[1], Create("p/b", "2"));
  // Appended after what the caller still holds.
  ASSERT_TRUE(w.Emit(Create("p/c", "3"), Context()));
  w.Close();
  ASSERT_TRUE(w.NextBatch(Context(), &batch));
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[2], Create("p/c", "3"));
  EXPECT_FALSE(w.NextBatch(Context(), &batch));  // closed and drained
  EXPECT_EQ(batch.size(), 3u);
  EXPECT_TRUE(internal::WatcherProducer(w).Closed());
}

TEST(WatcherTest, NextBatchWakesAFullProducerAndEndsWithTheContext) {
  Watcher w("p/", 1);
  ASSERT_TRUE(w.Emit(Create("p/a", "1"), Context()));
  std::thread producer([&] { EXPECT_TRUE(w.Emit(Create("p/b", "2"), Context())); });
  std::deque<KeyValueEvent> batch;
  ASSERT_TRUE(w.NextBatch(Context(), &batch));
  producer.join();  // room made by the batch
  batch.clear();
  ASSERT_TRUE(w.NextBatch(Context(), &batch));
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0], Create("p/b", "2"));
  auto [ctx, cancel] = WithTimeout(Context(), 10ms);
  EXPECT_FALSE(w.NextBatch(ctx, &batch));
  EXPECT_EQ(batch.size(), 1u);
}

TEST(WatcherTest, ZeroCapacityMeansOne) {
  Watcher w("p", 0);
  ASSERT_TRUE(w.Emit(Create("p/a", "1"), Context()));
  auto [ctx, cancel] = WithTimeout(Context(), 20ms);
  EXPECT_FALSE(w.Emit(Create("p/b", "2"), ctx));  // full: blocks until the context ends
  EXPECT_EQ(w.Next(), Create("p/a", "1"));
}

TEST(WatcherTest, NextForTimesOut) {
  Watcher w("p", 1);
  EXPECT_EQ(w.NextFor(5ms), std::nullopt);
  EXPECT_FALSE(internal::WatcherProducer(w).Closed());
}

TEST(WatcherTest, NextWithContextEndsWhenDone) {
  Watcher w("p", 1);
  auto [ctx, cancel] = WithCancel(Context());
  std::thread canceller([cancel = cancel] { cancel(); });
  EXPECT_EQ(w.Next(ctx), std::nullopt);
  canceller.join();
}

TEST(WatcherTest, StopUnblocksProducerAndWaitsForClose) {
  auto w = std::make_shared<Watcher>("p", 1);
  ASSERT_TRUE(w->Emit(Create("p/a", "1"), Context()));
  std::atomic<bool> emit_result = true;
  std::thread producer([&] {
    emit_result = w->Emit(Create("p/b", "2"), Context());  // blocks: full
    while (!internal::WatcherProducer(*w).Stopped()) std::this_thread::yield();
    w->Close();
  });
  w->Stop();
  producer.join();
  EXPECT_FALSE(emit_result);
  EXPECT_EQ(w->Next(), std::nullopt);
  EXPECT_FALSE(w->Emit(Create("p/c", "3"), Context()));
}

TEST(WatcherTest, StopHookRunsOnce) {
  Watcher w("p", 1);
  int calls = 0;
  internal::WatcherProducer(w).SetStopHook([&] {
    ++calls;
    w.Close();
  });
  w.Stop();
  w.Stop();
  EXPECT_EQ(calls, 1);
  // Set after stop: runs at once.
  internal::WatcherProducer(w).SetStopHook([&] { ++calls; });
  EXPECT_EQ(calls, 2);
}

TEST(WatcherTest, ConcurrentProducersLoseAndDuplicateNothing) {
  constexpr int kProducers = 4;
  constexpr int kPerProducer = 2000;
  Watcher w("p", 8);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&w, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        ASSERT_TRUE(w.Emit(Create("p/" + std::to_string(p), std::to_string(i)), Context()));
      }
    });
  }
  std::thread closer([&] {
    for (auto& t : producers) t.join();
    w.Close();
  });
  std::vector<int> next_expected(kProducers, 0);
  int total = 0;
  while (auto ev = w.Next()) {
    int p = std::stoi(ev->key.substr(2));
    EXPECT_EQ(std::stoi(ev->value), next_expected[p]) << "producer " << p << " out of order";
    next_expected[p] = std::stoi(ev->value) + 1;
    ++total;
  }
  closer.join();
  EXPECT_EQ(total, kProducers * kPerProducer);
}

TEST(WatcherTest, EventTypeNames) {
  EXPECT_EQ(EventTypeName(EventType::kCreate), "create");
  EXPECT_EQ(EventTypeName(EventType::kModify), "modify");
  EXPECT_EQ(EventTypeName(EventType::kDelete), "delete");
  EXPECT_EQ(EventTypeName(EventType::kListDone), "list-done");
}

TEST(WatcherTest, EventsAreCopyableAndAssignable) {
  KeyValueEvent a = Create("k", "v");
  KeyValueEvent b;
  b = a;
  EXPECT_EQ(a, b);
}

TEST(WatcherTest, TryEmitQueuesOnlyWhenThereIsRoom) {
  Watcher w("p/", 1);
  KeyValueEvent a = Create("p/a", "1");
  ASSERT_TRUE(internal::WatcherProducer(w).TryEmit(a));
  KeyValueEvent b = Create("p/b", "2");
  EXPECT_FALSE(internal::WatcherProducer(w).TryEmit(b));  // full: does not block, keeps the event
  EXPECT_EQ(b, Create("p/b", "2"));
  EXPECT_EQ(w.Next(), Create("p/a", "1"));
  ASSERT_TRUE(internal::WatcherProducer(w).TryEmit(b));
  EXPECT_EQ(w.Next(), Create("p/b", "2"));
  w.Close();
  KeyValueEvent c = Create("p/c", "3");
  EXPECT_FALSE(internal::WatcherProducer(w).TryEmit(c));
  EXPECT_EQ(c, Create("p/c", "3"));
}

TEST(WatcherTest, TryEmitFailsOnceStopped) {
  auto w = std::make_shared<Watcher>("p/", 4);
  std::thread stopper([w] { w->Stop(); });
  while (!internal::WatcherProducer(*w).Stopped()) std::this_thread::yield();
  KeyValueEvent a = Create("p/a", "1");
  EXPECT_FALSE(internal::WatcherProducer(*w).TryEmit(a));
  w->Close();
  stopper.join();
}

TEST(WatcherTest, SpaceHookRunsAtOnceWhenThereIsRoom) {
  Watcher w("p/", 2);
  int runs = 0;
  internal::WatcherProducer(w).NotifyWhenSpace([&] { ++runs; });
  EXPECT_EQ(runs, 1);
  // Run once only: making room later does not run it again.
  KeyValueEvent a = Create("p/a", "1");
  ASSERT_TRUE(internal::WatcherProducer(w).TryEmit(a));
  EXPECT_EQ(w.Next(), Create("p/a", "1"));
  EXPECT_EQ(runs, 1);
}

TEST(WatcherTest, SpaceHookRunsWhenTheConsumerMakesRoom) {
  Watcher w("p/", 1);
  KeyValueEvent a = Create("p/a", "1");
  ASSERT_TRUE(internal::WatcherProducer(w).TryEmit(a));
  std::atomic<int> runs = 0;
  internal::WatcherProducer(w).NotifyWhenSpace([&] { ++runs; });
  EXPECT_EQ(runs.load(), 0);
  EXPECT_EQ(w.NextFor(std::chrono::seconds(1)), Create("p/a", "1"));
  EXPECT_EQ(runs.load(), 1);
  KeyValueEvent b = Create("p/b", "2");
  EXPECT_TRUE(internal::WatcherProducer(w).TryEmit(b));
}

TEST(WatcherTest, LaterSpaceHookReplacesAPendingOne) {
  Watcher w("p/", 1);
  KeyValueEvent a = Create("p/a", "1");
  ASSERT_TRUE(internal::WatcherProducer(w).TryEmit(a));
  int first = 0, second = 0;
  internal::WatcherProducer(w).NotifyWhenSpace([&] { ++first; });
  internal::WatcherProducer(w).NotifyWhenSpace([&] { ++second; });
  EXPECT_EQ(w.Next(), Create("p/a", "1"));
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
}

TEST(WatcherTest, SpaceHookRunsOnCloseAndOnStop) {
  {
    Watcher w("p/", 1);
    KeyValueEvent a = Create("p/a", "1");
    ASSERT_TRUE(internal::WatcherProducer(w).TryEmit(a));
    int runs = 0;
    internal::WatcherProducer(w).NotifyWhenSpace([&] { ++runs; });
    w.Close();
    EXPECT_EQ(runs, 1);
  }
  {
    auto w = std::make_shared<Watcher>("p/", 1);
    KeyValueEvent a = Create("p/a", "1");
    ASSERT_TRUE(internal::WatcherProducer(*w).TryEmit(a));
    std::atomic<int> runs = 0;
    // The hook closes the channel, as a producer would once it sees the stop; Stop waits for it.
    internal::WatcherProducer(*w).NotifyWhenSpace([&] {
      ++runs;
      w->Close();
    });
    w->Stop();
    EXPECT_EQ(runs.load(), 1);
  }
}

TEST(WatcherTest, SpaceHookWaitsUntilHalfEmpty) {
  Watcher w("p/", 4);
  for (int i = 0; i < 4; ++i) {
    KeyValueEvent ev = Create("p/k", std::to_string(i));
    ASSERT_TRUE(internal::WatcherProducer(w).TryEmit(ev));
  }
  int runs = 0;
  internal::WatcherProducer(w).NotifyWhenSpace([&] { ++runs; });
  ASSERT_TRUE(w.Next().has_value());  // 3 left: room, but more than half full
  EXPECT_EQ(runs, 0);
  ASSERT_TRUE(w.Next().has_value());  // 2 left: half
  EXPECT_EQ(runs, 1);
}

TEST(WatcherTest, ProducerDrivenBySpaceHookDeliversEverythingInOrder) {
  // A producer that never blocks: it offers events with TryEmit and, when full, continues from
  // the space hook (here on its own thread, as an executor would).
  constexpr int kEvents = 2000;
  Watcher w("p/", 4);
  std::mutex mu;
  std::condition_variable cv;
  bool resume = true;
  std::thread producer([&] {
    for (int i = 0; i < kEvents;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return resume; });
        resume = false;
      }
      while (i < kEvents) {
        KeyValueEvent ev = Create("p/k", std::to_string(i));
        if (!internal::WatcherProducer(w).TryEmit(ev)) break;
        ++i;
      }
      if (i < kEvents) {
        internal::WatcherProducer(w).NotifyWhenSpace([&] {
          std::lock_guard<std::mutex> lock(mu);
          resume = true;
          cv.notify_all();
        });
      }
    }
    w.Close();
  });
  int expected = 0;
  while (auto ev = w.Next()) {
    EXPECT_EQ(ev->value, std::to_string(expected));
    ++expected;
  }
  producer.join();
  EXPECT_EQ(expected, kEvents);
}

}  // namespace
}  // namespace kvstore

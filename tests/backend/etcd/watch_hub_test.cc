// The WatchHub over a fake transport: listing, resuming, re-listing and flow control, without etcd.
#include "backend/etcd/watch_hub.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/watcher_producer.h"
#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "kvstore/paths.h"
#include "prometheus/registry.h"
#include "tests/backend/etcd/fake_transport.h"
#include "tests/support/eventually.h"
#include "tests/support/metrics_reader.h"

namespace kvstore {

// Readable failures (found by argument-dependent lookup).
void PrintTo(const KeyValueEvent& ev, std::ostream* os) {
  *os << EventTypeName(ev.type) << " " << ev.key << "=" << ev.value;
}

namespace etcd {
namespace {

using kvstore::testing::Eventually;
using kvstore::testing::ReadMetric;
using testing::FakeTransport;
using testing::FakeWatchServer;

constexpr auto kWait = std::chrono::seconds(10);

KeyValueEvent Event(EventType type, std::string key, std::string value = "") {
  return KeyValueEvent{type, std::move(key), std::move(value)};
}

std::string Describe(const std::vector<KeyValueEvent>& events) {
  std::string text;
  for (const KeyValueEvent& ev : events) {
    text += std::string(EventTypeName(ev.type)) + " " + ev.key + "=" + ev.value + "; ";
  }
  return text;
}

class WatchHubTest : public ::testing::Test {
 protected:
  void TearDown() override {
    hub_->Shutdown();
    executor_.Shutdown();
  }

  void UsePageSize(int64_t page_size) {
    hub_->Shutdown();
    hub_ = std::make_shared<WatchHub>(&transport_, &executor_, page_size);
  }

  // Reads `count` events, answering the hub's watch requests meanwhile (as etcd would).
  std::vector<KeyValueEvent> Read(Watcher& watcher, size_t count) {
    std::vector<KeyValueEvent> events;
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (events.size() < count && std::chrono::steady_clock::now() < deadline) {
      server_.Serve();
      if (auto ev = watcher.NextFor(std::chrono::milliseconds(5))) events.push_back(*ev);
    }
    return events;
  }

  // Moves fake time on until `condition` holds: retries wait on the executor's clock.
  template <typename Condition>
  bool AdvanceUntil(Condition condition) {
    return Eventually([&] {
      if (condition()) return true;
      clock_->Advance(std::chrono::seconds(1));
      return false;
    });
  }

  // Before the hub, which records into it: destroyed after it.
  prometheus::Registry registry_;
  BackendMetrics metrics_{registry_};
  FakeTransport transport_;
  FakeWatchServer server_{transport_};
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  // One thread: work posted to it runs in order, which the mid-list test relies on.
  // A strand: a task posted runs after every task handed over before it (timers included).
  Executor executor_{clock_, std::make_shared<Strand>()};
  std::shared_ptr<WatchHub> hub_ = std::make_shared<WatchHub>(&transport_, &executor_, 1000);
};

TEST_F(WatchHubTest, ListsThenListDoneThenLiveEvents) {
  UsePageSize(1);  // a page per key
  transport_.Put("p/a", "1");
  transport_.Put("p/b", "2");
  transport_.Put("q/outside", "x");
  std::shared_ptr<Watcher> watcher = hub_->ListAndWatch(Context(), "p/", 16);
  std::vector<KeyValueEvent> listed = Read(*watcher, 3);
  EXPECT_EQ(listed, (std::vector<KeyValueEvent>{Event(EventType::kCreate, "p/a", "1"),
                                                Event(EventType::kCreate, "p/b", "2"),
                                                Event(EventType::kListDone, "")}))
      << Describe(listed);
  EXPECT_EQ(listed.back().revision, 4);
  EXPECT_GE(transport_.NumRanges(), 2u);

  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));
  etcdserverpb::WatchCreateRequest create =
      transport_.LatestWatchStream()->Requests().front().create_request();
  EXPECT_EQ(create.key(), "p/");
  EXPECT_EQ(create.range_end(), "p0");
  EXPECT_EQ(create.start_revision(), 5);  // the listed revision + 1

  server_.Send({transport_.Put("p/a", "3")});
  server_.Send({transport_.Put("p/c", "4")});
  server_.Send({transport_.Delete("p/b")});
  server_.Send({transport_.Delete("p/never-listed-nor-seen")});
  std::vector<KeyValueEvent> live = Read(*watcher, 3);
  EXPECT_EQ(live, (std::vector<KeyValueEvent>{Event(EventType::kModify, "p/a", "3"),
                                              Event(EventType::kCreate, "p/c", "4"),
                                              Event(EventType::kDelete, "p/b", "2")}))
      << Describe(live);
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(20)).has_value());
  watcher->Stop();
  EXPECT_EQ(hub_->NumWatchers(), 0u);
}

double UnixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

TEST_F(WatchHubTest, FreshnessTellsWhenEachWatchLastHeardItsListPagesAndRestarts) {
  hub_->Shutdown();
  hub_ = std::make_shared<WatchHub>(&transport_, &executor_, 1, &metrics_);  // a page per key
  const std::string scope = GetScopeFromKey("p/");
  transport_.Put("p/a", "1");
  transport_.Put("p/b", "2");
  std::shared_ptr<Watcher> watcher = hub_->ListAndWatch(Context(), "p/", 16);
  ASSERT_EQ(Read(*watcher, 3).size(), 3u);
  std::vector<WatchFreshness> watches = hub_->Freshness();
  ASSERT_EQ(watches.size(), 1u);
  EXPECT_EQ(watches[0].prefix, "p/");
  EXPECT_GE(watches[0].list_pages, 2u);
  ASSERT_TRUE(watches[0].last_heard.has_value()) << "the end of its list";
  EXPECT_EQ(*watches[0].last_heard, clock_->WallNow());
  EXPECT_TRUE(watches[0].restarts.empty());
  EXPECT_EQ(ReadMetric(registry_, "cilium_kvstore_list_pages_total", {{"scope", scope}}),
            static_cast<double>(watches[0].list_pages));

  // Later (within the answer timeout: a longer silence asks for progress), an event.
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));
  clock_->Advance(std::chrono::seconds(5));
  server_.Send({transport_.Put("p/a", "3")});
  ASSERT_EQ(Read(*watcher, 1).size(), 1u);
  watches = hub_->Freshness();
  ASSERT_EQ(watches.size(), 1u);
  EXPECT_EQ(watches[0].last_heard, clock_->WallNow());
  EXPECT_EQ(ReadMetric(registry_, "cilium_kvstore_watch_last_heard_timestamp_seconds",
                       {{"scope", scope}}),
            UnixSeconds(clock_->WallNow()));

  // The stream lost: one restart for that reason, counted per watch and in the metric.
  transport_.LatestWatchStream()->End(absl::UnavailableError("connection reset"));
  ASSERT_TRUE(AdvanceUntil([&] { return server_.NumOpenWatches() == 1; }));
  watches = hub_->Freshness();
  ASSERT_EQ(watches.size(), 1u);
  EXPECT_EQ(watches[0].restarts, (std::map<std::string, uint64_t>{{"stream_loss", 1}}));
  EXPECT_EQ(ReadMetric(registry_, "cilium_kvstore_watch_restarts_total",
                       {{"scope", scope}, {"reason", "stream_loss"}}),
            1.0);
  watcher->Stop();
  EXPECT_TRUE(hub_->Freshness().empty());
}

TEST_F(WatchHubTest, WithoutDeleteValuesDeletesComeWithoutTheValue) {
  transport_.Put("p/a", "1");
  std::shared_ptr<Watcher> watcher =
      hub_->ListAndWatch(Context(), "p/", 16, WatchOptions{.delete_values = false});
  std::vector<KeyValueEvent> listed = Read(*watcher, 2);
  EXPECT_EQ(listed, (std::vector<KeyValueEvent>{Event(EventType::kCreate, "p/a", "1"),
                                                Event(EventType::kListDone, "")}))
      << Describe(listed);
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));
  server_.Send({transport_.Put("p/b", "2")});
  server_.Send({transport_.Delete("p/a")});
  server_.Send({transport_.Delete("p/b")});
  std::vector<KeyValueEvent> live = Read(*watcher, 3);
  EXPECT_EQ(live, (std::vector<KeyValueEvent>{Event(EventType::kCreate, "p/b", "2"),
                                              Event(EventType::kDelete, "p/a", ""),
                                              Event(EventType::kDelete, "p/b", "")}))
      << Describe(live);
  watcher->Stop();
  EXPECT_EQ(hub_->NumWatchers(), 0u);
}

TEST_F(WatchHubTest, LostStreamResumesFromTheLastRevisionWithoutGapOrDuplicate) {
  std::shared_ptr<Watcher> watcher = hub_->ListAndWatch(Context(), "p/", 16);
  ASSERT_EQ(Read(*watcher, 1), (std::vector<KeyValueEvent>{Event(EventType::kListDone, "")}));
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));
  server_.Send({transport_.Put("p/a", "1")});
  server_.Send({transport_.Put("p/b", "2")});
  const int64_t last_seen = transport_.Revision();
  ASSERT_EQ(Read(*watcher, 2).size(), 2u);

  transport_.LatestWatchStream()->End(absl::UnavailableError("connection reset"));
  // Changes while the stream is down arrive after the resume, once each.
  transport_.Put("p/a", "3");
  transport_.Delete("p/b");
  ASSERT_TRUE(AdvanceUntil([&] { return transport_.NumWatchStreams() == 2; }));
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));
  EXPECT_EQ(transport_.LatestWatchStream()->Requests().front().create_request().start_revision(),
            last_seen + 1);
  server_.Send({transport_.Put("p/c", "4")});
  std::vector<KeyValueEvent> resumed = Read(*watcher, 3);
  EXPECT_EQ(resumed, (std::vector<KeyValueEvent>{Event(EventType::kModify, "p/a", "3"),
                                                 Event(EventType::kDelete, "p/b", "2"),
                                                 Event(EventType::kCreate, "p/c", "4")}))
      << Describe(resumed);
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(20)).has_value());
  watcher->Stop();
}

// gRPC may run a stream's done handler before StartWatchStream returned: the hub must still open
// the next stream (it used to leave every watcher without a stream, silently).
TEST_F(WatchHubTest, StreamThatEndsWhileStartingIsReplaced) {
  std::shared_ptr<Watcher> watcher = hub_->ListAndWatch(Context(), "p/", 16);
  ASSERT_EQ(Read(*watcher, 1), (std::vector<KeyValueEvent>{Event(EventType::kListDone, "")}));
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));

  transport_.EndWatchStreamsWhileStarting(absl::UnavailableError("endpoint refused"));
  transport_.LatestWatchStream()->End(absl::UnavailableError("connection reset"));
  transport_.Put("p/a", "1");
  // The second stream ends inside its start; a third one resumes the watch.
  ASSERT_TRUE(AdvanceUntil([&] { return transport_.NumWatchStreams() == 3; }));
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));
  EXPECT_EQ(Read(*watcher, 1), (std::vector<KeyValueEvent>{Event(EventType::kCreate, "p/a", "1")}));
  watcher->Stop();
}

TEST_F(WatchHubTest, CompactedRevisionRelistsAndEmitsTheDifference) {
  transport_.Put("p/a", "1");
  transport_.Put("p/b", "2");
  transport_.Put("p/c", "3");
  std::shared_ptr<Watcher> watcher = hub_->ListAndWatch(Context(), "p/", 16);
  ASSERT_EQ(Read(*watcher, 4).size(), 4u);
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));

  // The stream goes down; meanwhile keys change and the history is compacted away.
  transport_.LatestWatchStream()->End(absl::UnavailableError("connection reset"));
  transport_.Put("p/a", "10");
  transport_.Delete("p/b");
  transport_.Put("p/d", "4");
  transport_.Compact(transport_.Revision());
  const size_t ranges_before = transport_.NumRanges();
  ASSERT_TRUE(AdvanceUntil([&] { return transport_.NumWatchStreams() == 2; }));

  // The resumed watch is refused as compacted: the hub lists again and reports the difference,
  // in key order, without a second kListDone. The vanished key comes with the last value the
  // watcher was told.
  std::vector<KeyValueEvent> diff = Read(*watcher, 3);
  EXPECT_EQ(diff, (std::vector<KeyValueEvent>{Event(EventType::kModify, "p/a", "10"),
                                              Event(EventType::kDelete, "p/b", "2"),
                                              Event(EventType::kCreate, "p/d", "4")}))
      << Describe(diff);
  EXPECT_GT(transport_.NumRanges(), ranges_before);
  // Then it watches from the new listing on.
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));
  server_.Send({transport_.Put("p/c", "5")});
  EXPECT_EQ(Read(*watcher, 1), (std::vector<KeyValueEvent>{Event(EventType::kModify, "p/c", "5")}));
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(20)).has_value());
  watcher->Stop();
}

TEST_F(WatchHubTest, CompactionInTheMiddleOfAListRestartsItWithoutDuplicates) {
  UsePageSize(1);
  transport_.Put("p/a", "1");
  transport_.Put("p/b", "2");
  transport_.Put("p/c", "3");
  transport_.HoldRanges(true);
  std::shared_ptr<Watcher> watcher = hub_->ListAndWatch(Context(), "p/", 16);
  ASSERT_TRUE(Eventually([&] { return transport_.NumHeldRanges() == 1; }));
  transport_.ReleaseHeldRanges();  // the first page: p/a at the pinned revision
  ASSERT_TRUE(Eventually([&] { return transport_.NumHeldRanges() == 1; }));
  // The pinned revision goes away before the next page is answered.
  transport_.Put("p/a", "changed");
  transport_.Delete("p/c");
  transport_.Compact(transport_.Revision());
  transport_.HoldRanges(false);
  transport_.ReleaseHeldRanges();
  std::vector<KeyValueEvent> events = Read(*watcher, 4);
  EXPECT_EQ(events,
            (std::vector<KeyValueEvent>{
                Event(EventType::kCreate, "p/a", "1"), Event(EventType::kModify, "p/a", "changed"),
                Event(EventType::kCreate, "p/b", "2"), Event(EventType::kListDone, "")}))
      << Describe(events);
  watcher->Stop();
}

TEST_F(WatchHubTest, ListPagesWaitForTheConsumer) {
  UsePageSize(1);
  for (int i = 0; i < 10; ++i) transport_.Put("p/" + std::to_string(i), "v");
  std::shared_ptr<Watcher> watcher = hub_->ListAndWatch(Context(), "p/", 1);
  // The watcher holds one key and the hub at most two pages: no more than three are fetched
  // until the consumer reads.
  ASSERT_TRUE(Eventually([&] { return transport_.NumRanges() >= 3; }));
  const auto idle = [&] {
    // Fetches are posted to the executor: let it run what it has queued (a wrongly fetched page
    // would show up as a fourth range sooner or later).
    auto done = std::make_shared<std::atomic<bool>>(false);
    executor_.Post([done] { *done = true; });
    return Eventually([&] { return done->load(); });
  };
  ASSERT_TRUE(idle());
  EXPECT_EQ(transport_.NumRanges(), 3u);
  std::vector<KeyValueEvent> events = Read(*watcher, 11);
  ASSERT_EQ(events.size(), 11u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(events[i], Event(EventType::kCreate, "p/" + std::to_string(i), "v"));
  }
  EXPECT_EQ(events.back().type, EventType::kListDone);
  watcher->Stop();
}

TEST_F(WatchHubTest, FullWatcherHoldsOnlyItsCapacityWhileOthersKeepReceiving) {
  constexpr size_t kCapacity = 2;
  std::shared_ptr<Watcher> slow = hub_->ListAndWatch(Context(), "p/", kCapacity);
  std::shared_ptr<Watcher> fast = hub_->ListAndWatch(Context(), "p", 1000);  // same keys
  ASSERT_EQ(Read(*fast, 1), (std::vector<KeyValueEvent>{Event(EventType::kListDone, "")}));
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 2; }));

  std::vector<KeyValueEvent> expected;
  for (int i = 0; i < 10; ++i) {
    const std::string key = "p/k" + std::to_string(i);
    server_.Send({transport_.Put(key, std::to_string(i))});
    expected.push_back(Event(EventType::kCreate, key, std::to_string(i)));
  }
  // Several events of one revision in one response.
  server_.Send(
      transport_.Txn({{"p/t0", "a"}, {"p/t1", "b"}, {"p/k0", "c"}, {"p/k1", std::nullopt}}));
  expected.push_back(Event(EventType::kCreate, "p/t0", "a"));
  expected.push_back(Event(EventType::kCreate, "p/t1", "b"));
  expected.push_back(Event(EventType::kModify, "p/k0", "c"));
  expected.push_back(Event(EventType::kDelete, "p/k1", "1"));
  for (int i = 10; i < 15; ++i) {
    const std::string key = "p/k" + std::to_string(i);
    server_.Send({transport_.Put(key, std::to_string(i))});
    expected.push_back(Event(EventType::kCreate, key, std::to_string(i)));
  }

  // The fast watcher gets everything while the slow one is full.
  std::vector<KeyValueEvent> fast_events = Read(*fast, expected.size());
  EXPECT_EQ(fast_events, expected) << Describe(fast_events);
  // The full watcher stopped taking events: its watch was cancelled on the stream, so neither
  // the server nor the hub keeps sending or queueing for it.
  EXPECT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));

  // Once it reads, it gets every event in order, once: the held rest of the response it was
  // in, then the rest from its last revision on.
  std::vector<KeyValueEvent> slow_events = Read(*slow, expected.size() + 1);
  ASSERT_FALSE(slow_events.empty());
  EXPECT_EQ(slow_events.front().type, EventType::kListDone);
  slow_events.erase(slow_events.begin());
  EXPECT_EQ(slow_events, expected) << Describe(slow_events);
  EXPECT_FALSE(slow->NextFor(std::chrono::milliseconds(20)).has_value());
  EXPECT_GT(server_.NumCreates(), 2u) << "the slow watcher subscribed again";
  slow->Stop();
  fast->Stop();
}

TEST_F(WatchHubTest, ConsumerThatStopsEndsTheWatchAndTheStream) {
  std::shared_ptr<Watcher> watcher = hub_->ListAndWatch(Context(), "p/", 1);
  ASSERT_TRUE(Eventually([&] { return server_.NumOpenWatches() == 1; }));
  server_.Send({transport_.Put("p/a", "1")});  // stays undelivered: the watcher is full
  watcher->Stop();
  EXPECT_EQ(hub_->NumWatchers(), 0u);
  EXPECT_TRUE(Eventually([&] { return transport_.LatestWatchStream()->ended(); }));
}

}  // namespace
}  // namespace etcd
}  // namespace kvstore

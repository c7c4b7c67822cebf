// Behaviour of the in-memory store beyond the shared conformance suite: lease TTLs on a fake
// clock, lease sizes, sessions, compaction and history limits, the default client, and a stress
// test of writers and watchers.
#include "kvstore/memory/in_memory_store.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backend/memory/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "tests/backend_conformance/watch_tracker.h"
#include "tests/support/eventually.h"

namespace kvstore::memory {
namespace {

using ::kvstore::testing::Eventually;
using ::kvstore::testing::StringMap;
using ::kvstore::testing::WatchTracker;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr auto kTimeout = std::chrono::seconds(30);

class Recorder {
 public:
  std::function<void(std::string_view)> Fn() {
    return [this](std::string_view key) {
      std::lock_guard<std::mutex> lock(mu_);
      keys_.emplace_back(key);
    };
  }
  std::vector<std::string> Keys() const {
    std::lock_guard<std::mutex> lock(mu_);
    return keys_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> keys_;
};

bool Missing(Backend& client, const std::string& key) {
  auto value = client.Get(Context(), key);
  return value.ok() && !value->has_value();
}

int64_t LeaseOf(Backend& client, const std::string& key) {
  auto pairs = client.ListPrefix(Context(), key);
  if (!pairs.ok() || !pairs->contains(key)) return -1;
  return pairs->at(key).lease_id;
}

StringMap ListValues(Backend& client, const std::string& prefix) {
  StringMap values;
  auto pairs = client.ListPrefix(Context(), prefix);
  EXPECT_TRUE(pairs.ok()) << pairs.status();
  if (pairs.ok()) {
    for (const auto& [key, value] : *pairs) values[key] = value.data;
  }
  return values;
}

class InMemoryStoreTest : public ::testing::Test {
 protected:
  std::shared_ptr<InMemoryStore> MakeStore(InMemoryOptions opts = {}) {
    if (!opts.clock) opts.clock = clock_;
    return InMemoryStore::Create(opts);
  }

  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
};

// ---- Leases and sessions ----

TEST_F(InMemoryStoreTest, LeasesOfALiveClientAreKeptAlive) {
  auto store = MakeStore({.lease_ttl = std::chrono::seconds(60)});
  auto client = store->NewClient("agent");
  ASSERT_TRUE(client->Update(Context(), "k", "v", true).ok());
  clock_->Advance(std::chrono::hours(24));
  store->ExpireDueLeases();
  EXPECT_EQ(client->Get(Context(), "k")->value_or("<gone>"), "v");
}

TEST_F(InMemoryStoreTest, ClosedClientsLeasesExpireAfterTheTtlOnTheClock) {
  auto store = MakeStore({.lease_ttl = std::chrono::seconds(60)});
  auto client = store->NewClient("agent");
  auto observer = store->NewClient("observer");
  Recorder recorder;
  client->RegisterLeaseExpiredObserver("", recorder.Fn());
  ASSERT_TRUE(client->Update(Context(), "leased", "v", true).ok());
  ASSERT_TRUE(client->Update(Context(), "plain", "p", false).ok());
  auto watcher = observer->ListAndWatch(Context(), "", 8);
  WatchTracker tracker(watcher, "");
  ASSERT_TRUE(tracker.ReadUntilListDone(kTimeout));

  client->Close();
  EXPECT_EQ(observer->Get(Context(), "leased")->value_or("<gone>"), "v") << "Close revokes nothing";
  clock_->Advance(std::chrono::seconds(59));
  store->ExpireDueLeases();
  EXPECT_EQ(observer->Get(Context(), "leased")->value_or("<gone>"), "v");

  // The store's own thread expires the lease once the clock passes the TTL.
  clock_->Advance(std::chrono::seconds(2));
  EXPECT_TRUE(Eventually([&] { return Missing(*observer, "leased"); }, kTimeout));
  EXPECT_EQ(observer->Get(Context(), "plain")->value_or("<gone>"), "p");
  EXPECT_TRUE(tracker.ReadUntilView({{"plain", "p"}}, kTimeout));
  EXPECT_EQ(tracker.events().back(), (KeyValueEvent{EventType::kDelete, "leased", "v"}));
  EXPECT_THAT(recorder.Keys(), IsEmpty()) << "a closed client's observers are gone";
  watcher->Stop();
}

TEST_F(InMemoryStoreTest, ExpireDueLeasesExpiresSynchronously) {
  auto store = MakeStore({.lease_ttl = std::chrono::seconds(10)});
  auto client = store->NewClient();
  auto reader = store->NewClient();
  ASSERT_TRUE(client->Update(Context(), "k", "v", true).ok());
  client.reset();  // destroying a client closes it
  clock_->Advance(std::chrono::seconds(10));
  store->ExpireDueLeases();
  EXPECT_TRUE(Missing(*reader, "k"));
}

TEST_F(InMemoryStoreTest, ExpireSessionDeletesKeysAndCallsObserversBeforeReturning) {
  auto store = MakeStore();
  auto client = store->NewClient();
  Recorder nodes, services;
  client->RegisterLeaseExpiredObserver("nodes/", nodes.Fn());
  client->RegisterLeaseExpiredObserver("services/", services.Fn());
  ASSERT_TRUE(client->Update(Context(), "nodes/a", "1", true).ok());
  ASSERT_TRUE(client->Update(Context(), "nodes/b", "2", true).ok());
  ASSERT_TRUE(client->Update(Context(), "services/x", "3", true).ok());
  ASSERT_TRUE(client->Update(Context(), "nodes/plain", "4", false).ok());
  const int64_t old_lease = LeaseOf(*client, "nodes/a");
  const int64_t revision = store->Revision();

  store->ExpireSession(*client);
  EXPECT_THAT(nodes.Keys(), ElementsAre("nodes/a", "nodes/b"));
  EXPECT_THAT(services.Keys(), ElementsAre("services/x"));
  EXPECT_TRUE(Missing(*client, "nodes/a"));
  EXPECT_TRUE(Missing(*client, "services/x"));
  EXPECT_FALSE(Missing(*client, "nodes/plain"));
  EXPECT_EQ(store->Revision(), revision + 1) << "one lease, one revision";
  EXPECT_THAT(client->Status().message, ::testing::HasSubstr("0 leases"));

  ASSERT_TRUE(client->Update(Context(), "nodes/a", "again", true).ok());
  EXPECT_GT(LeaseOf(*client, "nodes/a"), 0);
  EXPECT_NE(LeaseOf(*client, "nodes/a"), old_lease);

  // Expiring a session without leases, or a client of another store, does nothing.
  auto other_store = MakeStore();
  auto stranger = other_store->NewClient();
  store->ExpireSession(*stranger);
  store->ExpireSession(*store->NewClient());
  EXPECT_FALSE(Missing(*client, "nodes/a"));
}

TEST_F(InMemoryStoreTest, AtMostMaxKeysPerLease) {
  auto store = MakeStore({.max_keys_per_lease = 3});
  auto client = store->NewClient();
  Recorder recorder;
  client->RegisterLeaseExpiredObserver("k", recorder.Fn());
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(client->Update(Context(), "k" + std::to_string(i), "v", true).ok());
  }
  std::map<int64_t, int> keys_per_lease;
  for (int i = 0; i < 7; ++i) ++keys_per_lease[LeaseOf(*client, "k" + std::to_string(i))];
  std::vector<int> sizes;
  for (const auto& [lease, count] : keys_per_lease) sizes.push_back(count);
  EXPECT_THAT(sizes, ElementsAre(3, 3, 1));
  EXPECT_THAT(client->Status().message, ::testing::HasSubstr("3 leases"));

  // Rewriting a key keeps it on its lease.
  const int64_t lease_of_k0 = LeaseOf(*client, "k0");
  ASSERT_TRUE(client->Update(Context(), "k0", "v2", true).ok());
  EXPECT_EQ(LeaseOf(*client, "k0"), lease_of_k0);
  auto wrote = client->UpdateIfDifferent(Context(), "k0", "v2", true);
  ASSERT_TRUE(wrote.ok());
  EXPECT_FALSE(*wrote) << "k0 is on one of this session's leases";

  store->ExpireSession(*client);
  EXPECT_EQ(recorder.Keys().size(), 7u);
  EXPECT_THAT(ListValues(*client, ""), IsEmpty());
}

TEST_F(InMemoryStoreTest, UpdateIfDifferentWithoutLeaseKeepsTheLease) {
  auto store = MakeStore();
  auto client = store->NewClient();
  ASSERT_TRUE(client->Update(Context(), "k", "v", true).ok());
  const int64_t lease = LeaseOf(*client, "k");
  auto wrote = client->UpdateIfDifferent(Context(), "k", "v", false);
  ASSERT_TRUE(wrote.ok());
  EXPECT_FALSE(*wrote);
  EXPECT_EQ(LeaseOf(*client, "k"), lease);
}

TEST_F(InMemoryStoreTest, ManyClientsHaveTheirOwnSessions) {
  auto store = MakeStore();
  std::vector<std::shared_ptr<Backend>> clients;
  std::set<int64_t> leases;
  for (int i = 0; i < 50; ++i) {
    clients.push_back(store->NewClient("client-" + std::to_string(i)));
    ASSERT_TRUE(clients.back()->Update(Context(), "node/" + std::to_string(i), "up", true).ok());
    leases.insert(LeaseOf(*clients.back(), "node/" + std::to_string(i)));
  }
  EXPECT_EQ(leases.size(), 50u);
  store->ExpireSession(*clients[7]);
  EXPECT_TRUE(Missing(*clients[0], "node/7"));
  EXPECT_EQ(ListValues(*clients[0], "node/").size(), 49u);
}

TEST_F(InMemoryStoreTest, ObserverMayDropTheLastReferenceToItsClient) {
  auto store = MakeStore();
  auto holder = std::make_shared<std::shared_ptr<Backend>>(store->NewClient());
  std::atomic<int> calls{0};
  Backend& client = **holder;
  client.RegisterLeaseExpiredObserver("", [holder, &calls](std::string_view) {
    ++calls;
    holder->reset();
  });
  ASSERT_TRUE(client.Update(Context(), "a", "1", true).ok());
  ASSERT_TRUE(client.Update(Context(), "b", "2", true).ok());
  store->ExpireSession(client);
  // The first call destroyed (and so closed) the client: no call after that.
  EXPECT_EQ(calls.load(), 1);
  auto reader = store->NewClient();
  EXPECT_THAT(ListValues(*reader, ""), IsEmpty());
}

TEST_F(InMemoryStoreTest, ClosedClientRefusesOperationsAndItsWatchesEnd) {
  auto store = MakeStore();
  auto client = store->NewClient("gone");
  auto watcher = client->ListAndWatch(Context(), "", 4);
  client->Close();
  EXPECT_EQ(client->Update(Context(), "k", "v", false).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client->Get(Context(), "k").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client->Status().state, BackendState::kClosed);
  EXPECT_TRUE(kvstore::testing::ClosesWithin(*watcher, kTimeout));
  auto late = client->ListAndWatch(Context(), "", 4);
  EXPECT_TRUE(kvstore::testing::ClosesWithin(*late, kTimeout));
}

TEST_F(InMemoryStoreTest, ClientsKeepTheStoreAliveAndTheStoreClosesWatchersWhenItGoes) {
  auto client = MakeStore()->NewClient();  // the store handle is dropped at once
  ASSERT_TRUE(client->Update(Context(), "k", "v", false).ok());
  auto watcher = client->ListAndWatch(Context(), "", 4);
  WatchTracker tracker(watcher, "");
  ASSERT_TRUE(tracker.ReadUntilListDone(kTimeout));
  client.reset();  // the last reference: the store shuts down
  EXPECT_TRUE(tracker.ReadUntilClosed(kTimeout));
}

// ---- Revisions, status, limits ----

TEST_F(InMemoryStoreTest, RevisionsCountChanges) {
  auto store = MakeStore();
  auto client = store->NewClient();
  const int64_t start = store->Revision();
  EXPECT_GE(start, 1);
  ASSERT_TRUE(client->Update(Context(), "a/1", "v", false).ok());
  ASSERT_TRUE(client->Update(Context(), "a/2", "v", false).ok());
  EXPECT_EQ(store->Revision(), start + 2);
  EXPECT_EQ(client->ListPrefix(Context(), "a/2")->at("a/2").mod_revision, start + 2);
  ASSERT_TRUE(client->Delete(Context(), "missing").ok());
  ASSERT_TRUE(*client->UpdateIfDifferent(Context(), "a/1", "v", false) == false);
  ASSERT_TRUE(*client->CreateOnly(Context(), "a/1", "w", false) == false);
  ASSERT_TRUE(client->DeletePrefix(Context(), "none/").ok());
  EXPECT_EQ(store->Revision(), start + 2) << "no change, no revision";
  ASSERT_TRUE(client->DeletePrefix(Context(), "a/").ok());
  EXPECT_EQ(store->Revision(), start + 3) << "one DeletePrefix, one revision";
}

TEST_F(InMemoryStoreTest, StatusLine) {
  auto store = MakeStore();
  auto client = store->NewClient();
  ASSERT_TRUE(client->Update(Context(), "a", "v", true).ok());
  ASSERT_TRUE(client->Update(Context(), "b", "v", false).ok());
  const BackendStatus status = client->Status();
  EXPECT_EQ(status.state, BackendState::kOk);
  EXPECT_EQ(status.message,
            "in-memory store: 2 keys, revision " + std::to_string(store->Revision()) + ", 1 lease");
}

TEST_F(InMemoryStoreTest, OversizedKeyIsRejected) {
  auto store = MakeStore();
  auto client = store->NewClient();
  EXPECT_EQ(client->Update(Context(), std::string(kMaxValueBytes + 1, 'k'), "v", false).code(),
            absl::StatusCode::kResourceExhausted);
  const std::string exactly_max(kMaxValueBytes, 'v');
  EXPECT_TRUE(client->Update(Context(), "max", exactly_max, false).ok());
}

// ---- Watches, compaction, history ----

TEST_F(InMemoryStoreTest, CompactionMakesALaggingWatcherReList) {
  auto store = MakeStore();
  auto client = store->NewClient();
  ASSERT_TRUE(client->Update(Context(), "w/gone", "g", false).ok());
  ASSERT_TRUE(client->Update(Context(), "w/same", "s", false).ok());
  auto watcher = client->ListAndWatch(Context(), "w/", 1);
  WatchTracker tracker(watcher, "w/");
  ASSERT_TRUE(tracker.ReadUntilListDone(kTimeout));

  // The watch thread can hold at most one batch plus the channel; the rest must be re-listed.
  constexpr int kWrites = 4 * static_cast<int>(internal::kMaxWatchBatchEvents);
  for (int i = 1; i <= kWrites; ++i) {
    ASSERT_TRUE(client->Update(Context(), "w/hot", std::to_string(i), false).ok());
  }
  ASSERT_TRUE(client->Delete(Context(), "w/gone").ok());
  store->Compact();
  ASSERT_TRUE(client->Update(Context(), "w/late", "l", false).ok());

  const StringMap expected = {{"w/hot", std::to_string(kWrites)}, {"w/same", "s"}, {"w/late", "l"}};
  EXPECT_TRUE(tracker.ReadUntilView(expected, kTimeout));
  EXPECT_EQ(tracker.list_dones(), 1);
  const size_t live_events = tracker.events().size() - 3;  // two listed keys and the kListDone
  EXPECT_LT(live_events, static_cast<size_t>(kWrites))
      << "the watcher replayed instead of re-listing";
  // Re-listed events carry the revision of the state they report.
  EXPECT_EQ(tracker.events().back().revision, store->Revision());
  watcher->Stop();
}

TEST_F(InMemoryStoreTest, CompactOfAnOldRevisionKeepsNewerHistory) {
  auto store = MakeStore();
  auto client = store->NewClient();
  auto watcher = client->ListAndWatch(Context(), "", 1);
  WatchTracker tracker(watcher, "");
  ASSERT_TRUE(tracker.ReadUntilListDone(kTimeout));
  const int64_t before = store->Revision();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(client->Update(Context(), "k" + std::to_string(i), "v", false).ok());
  }
  store->Compact(before);      // nothing the watcher needs is lost
  store->Compact(before - 1);  // older than the last compaction: no-op
  StringMap expected;
  for (int i = 0; i < 10; ++i) expected["k" + std::to_string(i)] = "v";
  EXPECT_TRUE(tracker.ReadUntilView(expected, kTimeout));
  EXPECT_EQ(tracker.events().size(), 11u) << "every change replayed exactly once";
  watcher->Stop();
}

TEST_F(InMemoryStoreTest, WithoutHistoryEveryLaggingWatcherReLists) {
  auto store = MakeStore({.max_history_revisions = 0});
  auto client = store->NewClient();
  auto watcher = client->ListAndWatch(Context(), "", 2);
  WatchTracker tracker(watcher, "");
  ASSERT_TRUE(tracker.ReadUntilListDone(kTimeout));
  StringMap expected;
  for (int i = 0; i < 200; ++i) {
    const std::string key = absl::StrCat("k", i % 20);
    if (i % 7 == 3) {
      ASSERT_TRUE(client->Delete(Context(), key).ok());
      expected.erase(key);
    } else {
      ASSERT_TRUE(client->Update(Context(), key, std::to_string(i), false).ok());
      expected[key] = std::to_string(i);
    }
  }
  EXPECT_TRUE(tracker.ReadUntilView(expected, kTimeout));
  EXPECT_EQ(tracker.list_dones(), 1);
  watcher->Stop();
}

TEST_F(InMemoryStoreTest, SlowConsumerDoesNotBlockWriters) {
  auto store = MakeStore();
  auto client = store->NewClient();
  auto stuck = client->ListAndWatch(Context(), "", 1);  // never read
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(client->Update(Context(), absl::StrCat("k", i % 50), "v", false).ok());
  }
  EXPECT_EQ(ListValues(*client, "").size(), 50u);
  stuck->Stop();
}

// ---- Default client ----

TEST(DefaultClientTest, LazyProcessWideAndReplaceable) {
  SetDefaultClient(nullptr);
  std::vector<std::shared_ptr<Backend>> seen(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&seen, i] { seen[i] = DefaultClient(); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& client : seen) EXPECT_EQ(client, seen[0]);
  ASSERT_NE(seen[0], nullptr);
  ASSERT_TRUE(seen[0]->Update(Context(), "default/k", "v", false).ok());
  EXPECT_EQ(DefaultClient()->Get(Context(), "default/k")->value_or(""), "v");

  auto custom = InMemoryStore::Create()->NewClient("custom");
  SetDefaultClient(custom);
  EXPECT_EQ(DefaultClient(), custom);
  SetDefaultClient(nullptr);
  auto fresh = DefaultClient();
  EXPECT_NE(fresh, custom);
  EXPECT_NE(fresh, seen[0]);
  EXPECT_TRUE(Missing(*fresh, "default/k")) << "a new default store starts empty";
}

// ---- Stress ----

// Several writers (puts, leased puts, deletes, prefix deletes, session expiries, compactions)
// and several watchers of different prefixes and speeds: each watcher's final view must equal
// ListPrefix, with every event consistent along the way.
TEST_F(InMemoryStoreTest, StressWritersAndWatchersConverge) {
  auto store = MakeStore({.max_keys_per_lease = 5, .max_history_revisions = 300});
  constexpr int kWriters = 4;
  constexpr int kOpsPerWriter = 3000;
  const std::vector<std::string> prefixes = {"", "s/", "s/a/", "s/b/", "s/a/", "s/"};

  std::vector<std::shared_ptr<Backend>> writers;
  for (int i = 0; i < kWriters; ++i) writers.push_back(store->NewClient("w" + std::to_string(i)));
  auto watch_client = store->NewClient("watch");

  std::vector<std::unique_ptr<WatchTracker>> trackers;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    auto tracker = std::make_unique<WatchTracker>(
        watch_client->ListAndWatch(Context(), prefixes[i], i % 2 == 0 ? 1 : 64), prefixes[i]);
    ASSERT_TRUE(tracker->ReadUntilListDone(kTimeout));
    trackers.push_back(std::move(tracker));
  }

  std::atomic<bool> writing{true};
  std::vector<std::thread> consumers;
  for (size_t i = 0; i < trackers.size(); ++i) {
    consumers.emplace_back([&, i] {
      // Odd watchers are slow consumers.
      while (writing.load()) {
        trackers[i]->Read(std::chrono::milliseconds(5));
        if (i % 2 == 1) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(1234 + w);
      Backend& client = *writers[w];
      for (int op = 0; op < kOpsPerWriter; ++op) {
        const std::string key =
            std::string("s/") + (rng() % 2 ? "a/" : "b/") + std::to_string(rng() % 40);
        const std::string value = std::to_string(w) + ":" + std::to_string(op);
        switch (rng() % 20) {
          case 0:
            ASSERT_TRUE(client.Delete(Context(), key).ok());
            break;
          case 1:
            if (op % 200 == 1) {
              ASSERT_TRUE(client.DeletePrefix(Context(), "s/b/").ok());
            }
            break;
          case 2:
            if (op % 300 == 2) store->ExpireSession(client);
            break;
          case 3:
            if (op % 250 == 3) store->Compact();
            break;
          case 4:
          case 5:
          case 6:
            ASSERT_TRUE(client.UpdateIfDifferent(Context(), key, value, true).ok());
            break;
          default:
            ASSERT_TRUE(client.Update(Context(), key, value, rng() % 2 == 0).ok());
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  writing = false;
  for (auto& consumer : consumers) consumer.join();

  for (size_t i = 0; i < trackers.size(); ++i) {
    const StringMap expected = ListValues(*watch_client, prefixes[i]);
    EXPECT_TRUE(trackers[i]->ReadUntilView(expected, kTimeout))
        << "watcher of \"" << prefixes[i] << "\" has " << trackers[i]->view().size()
        << " keys, the store " << expected.size();
    EXPECT_EQ(trackers[i]->list_dones(), 1);
    trackers[i]->watcher().Stop();
  }
}

}  // namespace
}  // namespace kvstore::memory

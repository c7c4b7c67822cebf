// The bodies of the backend conformance suite (see backend_conformance.h).
#include "tests/backend_conformance/backend_conformance.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/watcher_producer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "tests/backend_conformance/watch_tracker.h"
#include "tests/support/eventually.h"

namespace kvstore::testing {

void BackendConformanceTest::SetUp() {
  factory_ = GetParam().make();
  ASSERT_NE(factory_, nullptr) << "the factory maker of " << GetParam().name << " returned null";
  static std::atomic<uint64_t> counter{0};
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  prefix_ = "conformance/" + std::string(info->name()) + "/" + std::to_string(getpid()) + "-" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "-" +
            std::to_string(counter++) + "/";
}

void BackendConformanceTest::TearDown() {
  for (auto& client : clients_) client->Close();
  clients_.clear();
  factory_.reset();
}

std::shared_ptr<Backend> BackendConformanceTest::NewClient() {
  auto client = factory_->NewClient();
  EXPECT_NE(client, nullptr);
  clients_.push_back(client);
  return client;
}

namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

StringMap ListValues(Backend& client, const std::string& prefix) {
  StringMap values;
  auto pairs = client.ListPrefix(Context(), prefix);
  EXPECT_TRUE(pairs.ok()) << pairs.status();
  if (!pairs.ok()) return values;
  for (const auto& [key, value] : *pairs) values[key] = value.data;
  return values;
}

std::optional<Value> GetValue(Backend& client, const std::string& key) {
  auto pairs = client.ListPrefix(Context(), key);
  EXPECT_TRUE(pairs.ok()) << pairs.status();
  if (!pairs.ok()) return std::nullopt;
  auto it = pairs->find(key);
  if (it == pairs->end()) return std::nullopt;
  return it->second;
}

bool Missing(Backend& client, const std::string& key) {
  auto value = client.Get(Context(), key);
  return value.ok() && !value->has_value();
}

std::vector<int64_t> LeaseIds(Backend& client, const std::string& prefix) {
  std::set<int64_t> ids;
  auto pairs = client.ListPrefix(Context(), prefix);
  if (pairs.ok()) {
    for (const auto& [key, value] : *pairs) {
      if (value.lease_id != 0) ids.insert(value.lease_id);
    }
  }
  return {ids.begin(), ids.end()};
}

// Records the keys a lease-expired observer is called with.
class ObserverRecorder {
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
  std::set<std::string> KeySet() const {
    auto keys = Keys();
    return {keys.begin(), keys.end()};
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> keys_;
};

// ---- Basic operations ----

TEST_P(BackendConformanceTest, GetOfMissingKeyIsNullopt) {
  auto client = NewClient();
  auto value = client->Get(Context(), Key("missing"));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_FALSE(value->has_value());
}

TEST_P(BackendConformanceTest, UpdateThenGet) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("a"), "one", false).ok());
  auto value = client->Get(Context(), Key("a"));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->value_or("<missing>"), "one");

  ASSERT_TRUE(client->Update(Context(), Key("a"), "two", false).ok());
  value = client->Get(Context(), Key("a"));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->value_or("<missing>"), "two");
}

TEST_P(BackendConformanceTest, EmptyValueIsAValue) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("empty"), "", false).ok());
  auto value = client->Get(Context(), Key("empty"));
  ASSERT_TRUE(value.ok()) << value.status();
  ASSERT_TRUE(value->has_value());
  EXPECT_EQ(**value, "");
}

TEST_P(BackendConformanceTest, DeleteRemovesKeyAndMissingKeyIsOk) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("a"), "1", false).ok());
  EXPECT_TRUE(client->Delete(Context(), Key("a")).ok());
  EXPECT_TRUE(Missing(*client, Key("a")));
  EXPECT_TRUE(client->Delete(Context(), Key("a")).ok());
  EXPECT_TRUE(client->Delete(Context(), Key("never-written")).ok());
}

TEST_P(BackendConformanceTest, ListPrefixReturnsOnlyThePrefixSorted) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("dir/b"), "2", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("dir/a"), "1", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("dir/sub/c"), "3", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("dirx"), "outside", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("di"), "outside", false).ok());

  auto pairs = client->ListPrefix(Context(), Key("dir/"));
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  std::vector<std::string> keys;
  for (const auto& [key, value] : *pairs) {
    keys.push_back(key);
    EXPECT_GT(value.mod_revision, 0) << key;
    EXPECT_EQ(value.lease_id, 0) << key;
  }
  EXPECT_THAT(keys, ElementsAre(Key("dir/a"), Key("dir/b"), Key("dir/sub/c")));
  EXPECT_EQ(pairs->at(Key("dir/a")).data, "1");
  EXPECT_EQ(pairs->at(Key("dir/sub/c")).data, "3");

  auto none = client->ListPrefix(Context(), Key("nothing/"));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, IsEmpty());
}

TEST_P(BackendConformanceTest, DeletePrefixDeletesOnlyThePrefix) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("dir/a"), "1", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("dir/b"), "2", true).ok());
  ASSERT_TRUE(client->Update(Context(), Key("dirx"), "3", false).ok());
  ASSERT_TRUE(client->DeletePrefix(Context(), Key("dir/")).ok());
  EXPECT_THAT(ListValues(*client, prefix()), ElementsAre(Pair(Key("dirx"), "3")));
  EXPECT_TRUE(client->DeletePrefix(Context(), Key("nothing/")).ok());
}

TEST_P(BackendConformanceTest, UpdateIfDifferentWritesOnlyWhenNeeded) {
  auto client = NewClient();
  const std::string key = Key("k");
  auto wrote = client->UpdateIfDifferent(Context(), key, "v1", false);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote) << "missing key";
  const int64_t first_revision = GetValue(*client, key)->mod_revision;

  wrote = client->UpdateIfDifferent(Context(), key, "v1", false);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_FALSE(*wrote) << "same value";
  EXPECT_EQ(GetValue(*client, key)->mod_revision, first_revision) << "no write expected";

  wrote = client->UpdateIfDifferent(Context(), key, "v2", false);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote) << "different value";
  EXPECT_EQ(client->Get(Context(), key)->value_or(""), "v2");

  wrote = client->UpdateIfDifferent(Context(), key, "v2", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote) << "same value, but not attached to the session lease";
  EXPECT_NE(GetValue(*client, key)->lease_id, 0);

  wrote = client->UpdateIfDifferent(Context(), key, "v2", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_FALSE(*wrote) << "same value, already on the session lease";
}

TEST_P(BackendConformanceTest, UpdateIfDifferentWithLeaseWritesOnlyWhenNeeded) {
  auto client = NewClient();
  auto other = NewClient();
  const std::string key = Key("k");
  auto wrote = client->UpdateIfDifferent(Context(), key, "v", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote) << "missing key";
  const std::optional<Value> first = GetValue(*client, key);
  ASSERT_TRUE(first.has_value());
  EXPECT_NE(first->lease_id, 0);

  wrote = client->UpdateIfDifferent(Context(), key, "v", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_FALSE(*wrote) << "same value, already on the session lease";
  EXPECT_EQ(GetValue(*client, key)->mod_revision, first->mod_revision) << "no write expected";

  // Another client deletes the key: it is missing again, whatever this session wrote before.
  ASSERT_TRUE(other->Delete(Context(), key).ok());
  wrote = client->UpdateIfDifferent(Context(), key, "v", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote) << "deleted by another client";
  EXPECT_EQ(client->Get(Context(), key)->value_or(""), "v");

  // Another client overwrites the value, keeping no lease.
  ASSERT_TRUE(other->Update(Context(), key, "w", false).ok());
  wrote = client->UpdateIfDifferent(Context(), key, "v", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote) << "overwritten by another client";
  const std::optional<Value> last = GetValue(*client, key);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->data, "v");
  EXPECT_EQ(last->lease_id, first->lease_id) << "back on the session lease";
}

TEST_P(BackendConformanceTest, UpdateIfDifferentRewritesKeyLeasedByAnotherSession) {
  auto first = NewClient();
  auto second = NewClient();
  const std::string key = Key("k");
  ASSERT_TRUE(first->Update(Context(), key, "v", true).ok());
  const int64_t first_lease = GetValue(*first, key)->lease_id;
  ASSERT_NE(first_lease, 0);

  auto wrote = second->UpdateIfDifferent(Context(), key, "v", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote);
  const int64_t second_lease = GetValue(*first, key)->lease_id;
  EXPECT_NE(second_lease, 0);
  EXPECT_NE(second_lease, first_lease);
}

TEST_P(BackendConformanceTest, CreateOnlyCreatesOnce) {
  auto client = NewClient();
  auto created = client->CreateOnly(Context(), Key("k"), "first", false);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  created = client->CreateOnly(Context(), Key("k"), "second", false);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE(*created);
  EXPECT_EQ(client->Get(Context(), Key("k"))->value_or(""), "first");

  created = client->CreateOnly(Context(), Key("leased"), "x", true);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  EXPECT_NE(GetValue(*client, Key("leased"))->lease_id, 0);
}

TEST_P(BackendConformanceTest, ModRevisionIsPositiveAndGrows) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("a"), "1", false).ok());
  const int64_t r1 = GetValue(*client, Key("a"))->mod_revision;
  ASSERT_TRUE(client->Update(Context(), Key("b"), "1", false).ok());
  const int64_t r2 = GetValue(*client, Key("b"))->mod_revision;
  ASSERT_TRUE(client->Update(Context(), Key("a"), "2", false).ok());
  const int64_t r3 = GetValue(*client, Key("a"))->mod_revision;
  EXPECT_GT(r1, 0);
  EXPECT_GT(r2, r1);
  EXPECT_GT(r3, r2);
  EXPECT_EQ(GetValue(*client, Key("b"))->mod_revision, r2) << "untouched key keeps its revision";
}

TEST_P(BackendConformanceTest, TwoClientsSeeEachOthersWrites) {
  auto writer = NewClient();
  auto reader = NewClient();
  auto watcher = reader->ListAndWatch(Context(), prefix(), 16);
  WatchTracker tracker(watcher, prefix());
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));

  ASSERT_TRUE(writer->Update(Context(), Key("a"), "from-writer", false).ok());
  EXPECT_EQ(reader->Get(Context(), Key("a"))->value_or(""), "from-writer");
  ASSERT_TRUE(reader->Update(Context(), Key("b"), "from-reader", false).ok());
  EXPECT_EQ(writer->Get(Context(), Key("b"))->value_or(""), "from-reader");
  EXPECT_TRUE(
      tracker.ReadUntilView({{Key("a"), "from-writer"}, {Key("b"), "from-reader"}}, Timeout()));
  watcher->Stop();
}

TEST_P(BackendConformanceTest, OddKeyBytesRoundTrip) {
  auto client = NewClient();
  const std::vector<std::string> names = {
      "with space",
      std::string("nul\0byte", 8),
      "\xff\xfe\x80 not utf-8",
      "ключ/\xF0\x9F\x98\x80",
      "tab\tand\nnewline",
      "trailing-slash/",
  };
  auto watcher = client->ListAndWatch(Context(), prefix(), 16);
  WatchTracker tracker(watcher, prefix());
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));

  StringMap expected;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string key = Key(names[i]);
    const std::string value = "value " + std::to_string(i) + std::string("\0\xff", 2);
    ASSERT_TRUE(client->Update(Context(), key, value, false).ok()) << i;
    expected[key] = value;
  }
  for (const auto& [key, value] : expected) {
    auto got = client->Get(Context(), key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->value_or("<missing>"), value);
  }
  EXPECT_EQ(ListValues(*client, prefix()), expected);
  EXPECT_TRUE(tracker.ReadUntilView(expected, Timeout()));
  watcher->Stop();
}

TEST_P(BackendConformanceTest, LargeValuesUpToTheLimitWorkLargerAreRejected) {
  auto client = NewClient();
  const std::string one_mib(1 << 20, 'x');
  ASSERT_TRUE(client->Update(Context(), Key("big"), one_mib, false).ok());
  auto got = client->Get(Context(), Key("big"));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->value_or("").size(), one_mib.size());
  EXPECT_TRUE(got->value_or("") == one_mib);

  const std::string too_big(2 << 20, 'y');
  EXPECT_EQ(client->Update(Context(), Key("too-big"), too_big, false).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(
      client->Update(Context(), Key("too-big"), std::string(kMaxValueBytes + 1, 'z'), true).code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client->UpdateIfDifferent(Context(), Key("too-big"), too_big, false).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client->CreateOnly(Context(), Key("too-big"), too_big, false).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Missing(*client, Key("too-big")));

  // The client keeps working, and a watcher lists the big value.
  ASSERT_TRUE(client->Update(Context(), Key("small"), "ok", false).ok());
  auto watcher = client->ListAndWatch(Context(), prefix(), 4);
  WatchTracker tracker(watcher, prefix());
  EXPECT_TRUE(tracker.ReadUntilListDone(Timeout()));
  EXPECT_EQ(tracker.view().size(), 2u);
  EXPECT_TRUE(tracker.view().count(Key("big")) && tracker.view().at(Key("big")) == one_mib);
  watcher->Stop();
}

// Both backends refuse to write a key no request could carry, before sending anything, every
// write path alike; such a key cannot exist, so reading finds nothing and deleting succeeds.
TEST_P(BackendConformanceTest, OversizedKeysAreRejectedOnEveryWritePath) {
  auto client = NewClient();
  const std::string huge_key = Key(std::string(kMaxValueBytes + 1, 'k'));
  EXPECT_EQ(client->Update(Context(), huge_key, "v", false).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client->UpdateIfDifferent(Context(), huge_key, "v", true).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(client->CreateOnly(Context(), huge_key, "v", false).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(client->Delete(Context(), huge_key).ok());
  auto missing = client->Get(Context(), huge_key);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(*missing, std::nullopt);

  const std::string fine = Key("fine");
  const std::vector<WriteOp> ops = {
      WriteOp{fine, std::string_view("1"), false}, WriteOp{huge_key, std::string_view("2"), false},
      WriteOp{"", std::nullopt, false}, WriteOp{huge_key, std::nullopt, false}};
  std::vector<absl::Status> results = client->ApplyBatch(Context(), ops);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_TRUE(results[0].ok()) << results[0];
  EXPECT_EQ(results[1].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(results[2].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(results[3].ok()) << results[3];
  auto got = client->Get(Context(), fine);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->value_or(""), "1");
}

TEST_P(BackendConformanceTest, EmptyKeyIsInvalid) {
  auto client = NewClient();
  EXPECT_EQ(client->Update(Context(), "", "v", false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->UpdateIfDifferent(Context(), "", "v", false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->CreateOnly(Context(), "", "v", false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(BackendConformanceTest, DoneContextReturnsItsError) {
  auto client = NewClient();
  auto [ctx, cancel] = WithCancel(Context());
  cancel();
  EXPECT_EQ(client->Update(ctx, Key("a"), "v", false).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(client->Get(ctx, Key("a")).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(client->ListPrefix(ctx, prefix()).status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(client->Delete(ctx, Key("a")).code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(Missing(*client, Key("a")));
}

TEST_P(BackendConformanceTest, StatusDescribesTheBackend) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("a"), "v", true).ok());
  BackendStatus status = client->Status();
  EXPECT_EQ(status.state, BackendState::kOk);
  EXPECT_FALSE(status.message.empty());
}

// ---- Leases ----

TEST_P(BackendConformanceTest, LeasedKeysOfOneSessionShareALease) {
  auto client = NewClient();
  auto other = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("a"), "1", true).ok());
  ASSERT_TRUE(client->Update(Context(), Key("b"), "2", true).ok());
  ASSERT_TRUE(client->Update(Context(), Key("plain"), "3", false).ok());
  ASSERT_TRUE(other->Update(Context(), Key("other"), "4", true).ok());

  auto pairs = client->ListPrefix(Context(), prefix());
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  ASSERT_EQ(pairs->size(), 4u);
  EXPECT_NE(pairs->at(Key("a")).lease_id, 0);
  EXPECT_EQ(pairs->at(Key("a")).lease_id, pairs->at(Key("b")).lease_id);
  EXPECT_EQ(pairs->at(Key("plain")).lease_id, 0);
  EXPECT_NE(pairs->at(Key("other")).lease_id, 0);
  EXPECT_NE(pairs->at(Key("other")).lease_id, pairs->at(Key("a")).lease_id);

  // A plain write detaches the key from its lease.
  ASSERT_TRUE(client->Update(Context(), Key("b"), "2", false).ok());
  EXPECT_EQ(GetValue(*client, Key("b"))->lease_id, 0);
}

TEST_P(BackendConformanceTest, LeaseLossDeletesKeysAndNotifiesMatchingObservers) {
  ObserverRecorder under_a, under_b, unrelated, of_other;
  auto client = NewClient();
  auto other = NewClient();
  // Closed before the recorders their observers call go away.
  struct Closer {
    std::vector<std::shared_ptr<Backend>> clients;
    ~Closer() {
      for (auto& c : clients) c->Close();
    }
  } closer{{client, other}};
  client->RegisterLeaseExpiredObserver(Key("a/"), under_a.Fn());
  client->RegisterLeaseExpiredObserver(Key("b/"), under_b.Fn());
  client->RegisterLeaseExpiredObserver(Key("zzz/"), unrelated.Fn());
  other->RegisterLeaseExpiredObserver(prefix(), of_other.Fn());

  ASSERT_TRUE(client->Update(Context(), Key("a/1"), "a1", true).ok());
  ASSERT_TRUE(client->Update(Context(), Key("a/2"), "a2", true).ok());
  ASSERT_TRUE(client->Update(Context(), Key("b/1"), "b1", true).ok());
  ASSERT_TRUE(client->Update(Context(), Key("c/plain"), "c", false).ok());
  ASSERT_TRUE(other->Update(Context(), Key("o/1"), "o1", true).ok());
  const int64_t old_lease = GetValue(*client, Key("a/1"))->lease_id;

  auto watcher = other->ListAndWatch(Context(), prefix(), 64);
  WatchTracker tracker(watcher, prefix());
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));
  ASSERT_EQ(tracker.view().size(), 5u);

  std::vector<int64_t> lease_ids = LeaseIds(*client, Key("a/"));
  for (int64_t id : LeaseIds(*client, Key("b/"))) lease_ids.push_back(id);
  factory().ExpireSession(*client, lease_ids);

  EXPECT_TRUE(Eventually(
      [&] {
        return under_a.KeySet() == std::set<std::string>{Key("a/1"), Key("a/2")} &&
               under_b.KeySet() == std::set<std::string>{Key("b/1")};
      },
      Timeout()))
      << "a/ observer saw " << under_a.Keys().size() << " keys, b/ observer "
      << under_b.Keys().size();
  EXPECT_TRUE(Missing(*other, Key("a/1")));
  EXPECT_TRUE(Missing(*other, Key("a/2")));
  EXPECT_TRUE(Missing(*other, Key("b/1")));
  EXPECT_EQ(other->Get(Context(), Key("c/plain"))->value_or(""), "c");
  EXPECT_EQ(other->Get(Context(), Key("o/1"))->value_or(""), "o1");

  // Watchers see the deletes, with the last values.
  EXPECT_TRUE(tracker.ReadUntilView({{Key("c/plain"), "c"}, {Key("o/1"), "o1"}}, Timeout()));
  std::map<std::string, std::string> deleted;
  for (const auto& event : tracker.events()) {
    if (event.type == EventType::kDelete) deleted[event.key] = event.value;
  }
  EXPECT_EQ(deleted, (StringMap{{Key("a/1"), "a1"}, {Key("a/2"), "a2"}, {Key("b/1"), "b1"}}));

  // The next leased write gets a new lease.
  ASSERT_TRUE(client->Update(Context(), Key("a/1"), "again", true).ok());
  const int64_t new_lease = GetValue(*client, Key("a/1"))->lease_id;
  EXPECT_NE(new_lease, 0);
  EXPECT_NE(new_lease, old_lease);
  EXPECT_THAT(under_a.Keys(), UnorderedElementsAre(Key("a/1"), Key("a/2")));
  EXPECT_THAT(unrelated.Keys(), IsEmpty());
  EXPECT_THAT(of_other.Keys(), IsEmpty()) << "observers belong to their own client";
  watcher->Stop();
}

TEST_P(BackendConformanceTest, UpdateIfDifferentAfterLeaseLossWritesAgain) {
  auto client = NewClient();
  ObserverRecorder recorder;
  client->RegisterLeaseExpiredObserver(prefix(), recorder.Fn());
  ASSERT_TRUE(client->Update(Context(), Key("k"), "v", true).ok());
  factory().ExpireSession(*client, LeaseIds(*client, prefix()));
  ASSERT_TRUE(Eventually([&] { return !recorder.Keys().empty(); }, Timeout()));
  auto wrote = client->UpdateIfDifferent(Context(), Key("k"), "v", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote);
  EXPECT_NE(GetValue(*client, Key("k"))->lease_id, 0);
}

TEST_P(BackendConformanceTest, RemovedObserverIsNotCalled) {
  auto client = NewClient();
  ObserverRecorder removed, kept;
  client->RegisterLeaseExpiredObserver(Key("removed/"), removed.Fn());
  client->RegisterLeaseExpiredObserver(Key("removed/"), nullptr);
  client->RegisterLeaseExpiredObserver(Key("kept/"), kept.Fn());
  ASSERT_TRUE(client->Update(Context(), Key("removed/1"), "x", true).ok());
  ASSERT_TRUE(client->Update(Context(), Key("kept/1"), "y", true).ok());
  factory().ExpireSession(*client, LeaseIds(*client, prefix()));
  ASSERT_TRUE(Eventually([&] { return !kept.Keys().empty(); }, Timeout()));
  EXPECT_TRUE(Eventually([&] { return Missing(*client, Key("removed/1")); }, Timeout()));
  EXPECT_THAT(kept.Keys(), ElementsAre(Key("kept/1")));
  EXPECT_THAT(removed.Keys(), IsEmpty());
}

TEST_P(BackendConformanceTest, ReplacedObserverIsTheOneCalled) {
  auto client = NewClient();
  ObserverRecorder first, second;
  client->RegisterLeaseExpiredObserver(prefix(), first.Fn());
  client->RegisterLeaseExpiredObserver(prefix(), second.Fn());
  ASSERT_TRUE(client->Update(Context(), Key("k"), "x", true).ok());
  factory().ExpireSession(*client, LeaseIds(*client, prefix()));
  ASSERT_TRUE(Eventually([&] { return !second.Keys().empty(); }, Timeout()));
  EXPECT_THAT(second.Keys(), ElementsAre(Key("k")));
  EXPECT_THAT(first.Keys(), IsEmpty());
}

TEST_P(BackendConformanceTest, CloseRevokesNothingAndRefusesLaterOperations) {
  auto client = factory().NewClient();
  auto other = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("leased"), "v", true).ok());
  auto watcher = client->ListAndWatch(Context(), prefix(), 4);
  client->Close();

  EXPECT_EQ(other->Get(Context(), Key("leased"))->value_or("<gone>"), "v")
      << "Close must not revoke the lease";
  EXPECT_TRUE(ClosesWithin(*watcher, Timeout())) << "Close ends the client's watches";
  for (absl::StatusCode code : {client->Get(Context(), Key("leased")).status().code(),
                                client->Update(Context(), Key("x"), "v", false).code()}) {
    EXPECT_TRUE(code == absl::StatusCode::kFailedPrecondition ||
                code == absl::StatusCode::kUnavailable)
        << absl::StatusCodeToString(code);
  }
  client->Close();  // idempotent
}

// ---- ListAndWatch ----

TEST_P(BackendConformanceTest, ListAndWatchListsSortedThenStreamsChanges) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("c"), "3", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("a"), "1", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("b"), "2", false).ok());
  ASSERT_TRUE(client->Update(Context(), "outside-" + prefix(), "x", false).ok());

  auto watcher = client->ListAndWatch(Context(), prefix(), 8);
  ASSERT_NE(watcher, nullptr);
  EXPECT_EQ(watcher->Prefix(), prefix());
  WatchTracker tracker(watcher, prefix());
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));
  EXPECT_THAT(tracker.events(), ElementsAre(KeyValueEvent{EventType::kCreate, Key("a"), "1"},
                                            KeyValueEvent{EventType::kCreate, Key("b"), "2"},
                                            KeyValueEvent{EventType::kCreate, Key("c"), "3"},
                                            KeyValueEvent{EventType::kListDone, "", ""}));

  ASSERT_TRUE(client->Update(Context(), Key("d"), "4", false).ok());
  ASSERT_TRUE(client->Update(Context(), "outside-" + prefix() + "2", "x", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("a"), "1b", false).ok());
  ASSERT_TRUE(client->Delete(Context(), Key("b")).ok());
  ASSERT_TRUE(client->Delete(Context(), Key("never")).ok());
  ASSERT_TRUE(client->Update(Context(), Key("b"), "2b", true).ok());

  std::vector<KeyValueEvent> live;
  for (int i = 0; i < 4; ++i) {
    auto event = tracker.Read(Timeout());
    ASSERT_TRUE(event.has_value()) << "event " << i;
    live.push_back(*event);
  }
  EXPECT_THAT(live, ElementsAre(KeyValueEvent{EventType::kCreate, Key("d"), "4"},
                                KeyValueEvent{EventType::kModify, Key("a"), "1b"},
                                KeyValueEvent{EventType::kDelete, Key("b"), "2"},
                                KeyValueEvent{EventType::kCreate, Key("b"), "2b"}));
  int64_t last_revision = 0;
  for (const auto& event : live) {
    EXPECT_GT(event.revision, last_revision) << event.key;
    last_revision = event.revision;
  }
  EXPECT_FALSE(tracker.Read(std::chrono::milliseconds(50)).has_value()) << "unexpected event";
  watcher->Stop();
}

TEST_P(BackendConformanceTest, ListAndWatchOfEmptyPrefixSendsListDone) {
  auto client = NewClient();
  auto watcher = client->ListAndWatch(Context(), Key("empty/"), 0);  // 0: as small as possible
  WatchTracker tracker(watcher, Key("empty/"));
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));
  EXPECT_EQ(tracker.events().size(), 1u);
  ASSERT_TRUE(client->Update(Context(), Key("empty/x"), "1", false).ok());
  EXPECT_TRUE(tracker.ReadUntilView({{Key("empty/x"), "1"}}, Timeout()));
  watcher->Stop();
}

TEST_P(BackendConformanceTest, SeveralWatchersOfOnePrefixEachSeeEverything) {
  auto client = NewClient();
  auto first = client->ListAndWatch(Context(), prefix(), 4);
  auto second = client->ListAndWatch(Context(), prefix(), 4);
  WatchTracker first_tracker(first, prefix()), second_tracker(second, prefix());
  ASSERT_TRUE(first_tracker.ReadUntilListDone(Timeout()));
  ASSERT_TRUE(second_tracker.ReadUntilListDone(Timeout()));
  StringMap expected;
  for (int i = 0; i < 20; ++i) {
    expected[Key(std::to_string(i))] = std::to_string(i);
    ASSERT_TRUE(client->Update(Context(), Key(std::to_string(i)), std::to_string(i), false).ok());
  }
  EXPECT_TRUE(first_tracker.ReadUntilView(expected, Timeout()));
  EXPECT_TRUE(second_tracker.ReadUntilView(expected, Timeout()));
  first->Stop();
  second->Stop();
}

TEST_P(BackendConformanceTest, DeletePrefixIsSeenAsDeletesWithLastValues) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("d/1"), "one", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("d/2"), "two", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("keep"), "k", false).ok());
  auto watcher = client->ListAndWatch(Context(), prefix(), 8);
  WatchTracker tracker(watcher, prefix());
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));
  ASSERT_TRUE(client->DeletePrefix(Context(), Key("d/")).ok());
  ASSERT_TRUE(tracker.ReadUntilView({{Key("keep"), "k"}}, Timeout()));
  std::vector<KeyValueEvent> deletes;
  for (const auto& event : tracker.events()) {
    if (event.type == EventType::kDelete) deletes.push_back(event);
  }
  EXPECT_THAT(deletes, UnorderedElementsAre(KeyValueEvent{EventType::kDelete, Key("d/1"), "one"},
                                            KeyValueEvent{EventType::kDelete, Key("d/2"), "two"}));
  watcher->Stop();
}

// Writers keep writing while the watch starts: every key's values must arrive after the list
// without a gap or a duplicate.
TEST_P(BackendConformanceTest, NoGapBetweenListAndLiveEventsUnderConcurrentWrites) {
  auto writer_client = NewClient();
  auto watch_client = NewClient();
  constexpr int kKeys = 8;
  std::atomic<int> written{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int round = 1; !stop.load(); ++round) {
      for (int k = 0; k < kKeys; ++k) {
        ASSERT_TRUE(writer_client
                        ->Update(Context(), Key(absl::StrCat("k", k)), std::to_string(round), false)
                        .ok());
        ++written;
      }
    }
  });
  ASSERT_TRUE(Eventually([&] { return written.load() >= kKeys * 10; }, Timeout()));
  auto watcher = watch_client->ListAndWatch(Context(), prefix(), 4);
  WatchTracker tracker(watcher, prefix());
  EXPECT_TRUE(tracker.ReadUntilListDone(Timeout()));
  const size_t listed = tracker.events().size();
  // Let the writer go on for a while after the list.
  EXPECT_TRUE(
      tracker.ReadUntil([&] { return tracker.events().size() >= listed + 100; }, Timeout()));
  stop = true;
  writer.join();

  EXPECT_TRUE(tracker.ReadUntilView(ListValues(*watch_client, prefix()), Timeout()));
  EXPECT_EQ(tracker.list_dones(), 1);

  // Per key: the listed value, then every later value exactly once, in order.
  std::map<std::string, int> last;
  bool listing = true;
  for (const auto& event : tracker.events()) {
    if (event.type == EventType::kListDone) {
      listing = false;
      continue;
    }
    const int value = std::stoi(event.value);
    if (listing) {
      EXPECT_EQ(event.type, EventType::kCreate);
      last[event.key] = value;
      continue;
    }
    ASSERT_NE(event.type, EventType::kDelete);
    auto it = last.find(event.key);
    const int expected_value = it == last.end() ? 1 : it->second + 1;
    EXPECT_EQ(value, expected_value)
        << event.key << (value < expected_value ? " duplicate" : " gap");
    last[event.key] = value;
  }
  watcher->Stop();
}

// The consumer lags, the history it needs is compacted away: the watcher re-lists by itself and
// the consumer's view converges, with consistent event types and no second kListDone.
TEST_P(BackendConformanceTest, WatcherBehindACompactionReListsTransparently) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("changed"), "0", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("removed"), "r", false).ok());
  ASSERT_TRUE(client->Update(Context(), Key("same"), "s", false).ok());
  auto watcher = client->ListAndWatch(Context(), prefix(), 1);
  WatchTracker tracker(watcher, prefix());
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));

  // Far more changes than any watcher buffers, while the consumer reads nothing.
  for (int i = 1; i <= 600; ++i) {
    ASSERT_TRUE(client->Update(Context(), Key("changed"), std::to_string(i), false).ok());
  }
  ASSERT_TRUE(client->Delete(Context(), Key("removed")).ok());
  ASSERT_TRUE(client->Update(Context(), Key("new"), "n", false).ok());
  factory().Compact();

  const StringMap expected = {{Key("changed"), "600"}, {Key("same"), "s"}, {Key("new"), "n"}};
  EXPECT_EQ(ListValues(*client, prefix()), expected);
  EXPECT_TRUE(tracker.ReadUntilView(expected, Timeout()));
  EXPECT_EQ(tracker.list_dones(), 1);

  // And the watch goes on.
  ASSERT_TRUE(client->Update(Context(), Key("after"), "a", false).ok());
  EXPECT_TRUE(
      tracker.ReadUntil([&] { return tracker.view().count(Key("after")) == 1; }, Timeout()));
  EXPECT_EQ(tracker.list_dones(), 1);
  watcher->Stop();
}

TEST_P(BackendConformanceTest, StopClosesTheWatcherPromptly) {
  auto client = NewClient();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(client->Update(Context(), Key(std::to_string(i)), "v", false).ok());
  }
  // The producer is blocked on a full channel when the consumer stops.
  auto watcher = client->ListAndWatch(Context(), prefix(), 1);
  ASSERT_TRUE(watcher->NextFor(Timeout()).has_value());
  const auto start = std::chrono::steady_clock::now();
  watcher->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE(watcher->Next().has_value());
  EXPECT_TRUE(internal::WatcherProducer(*watcher).Closed());

  // An idle watcher stops just as well.
  auto idle = client->ListAndWatch(Context(), Key("idle/"), 4);
  WatchTracker tracker(idle, Key("idle/"));
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));
  const auto idle_start = std::chrono::steady_clock::now();
  idle->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - idle_start, std::chrono::seconds(5));
  EXPECT_FALSE(idle->Next().has_value());
}

TEST_P(BackendConformanceTest, CancelledContextClosesTheWatcher) {
  auto client = NewClient();
  ASSERT_TRUE(client->Update(Context(), Key("a"), "1", false).ok());
  auto [ctx, cancel] = WithCancel(Context());
  auto watcher = client->ListAndWatch(ctx, prefix(), 4);
  WatchTracker tracker(watcher, prefix());
  ASSERT_TRUE(tracker.ReadUntilListDone(Timeout()));
  cancel();
  EXPECT_TRUE(tracker.ReadUntilClosed(Timeout()));
  EXPECT_FALSE(watcher->Next().has_value());

  // A context that is already done gives a watcher that closes without a list.
  auto late = client->ListAndWatch(ctx, prefix(), 4);
  ASSERT_NE(late, nullptr);
  EXPECT_TRUE(ClosesWithin(*late, Timeout()));
}

TEST_P(BackendConformanceTest, ContextDeadlineClosesTheWatcher) {
  auto client = NewClient();
  auto [ctx, cancel] = WithTimeout(Context(), std::chrono::milliseconds(100));
  auto watcher = client->ListAndWatch(ctx, prefix(), 4);
  EXPECT_TRUE(ClosesWithin(*watcher, Timeout()));
  cancel();
}

// ---- Asynchronous calls ----

// Collects the completions of asynchronous calls, each by its index, and counts every run so that
// a completion run twice shows.
class Completions {
 public:
  explicit Completions(size_t n) : statuses_(n), runs_(n, 0), values_(n) {}

  Backend::StatusCallback StatusOf(size_t i) {
    return [this, i](absl::Status status) { Record(i, std::move(status), std::nullopt); };
  }
  Backend::GetCallback ValueOf(size_t i) {
    return [this, i](absl::StatusOr<std::optional<std::string>> value) {
      if (value.ok()) {
        Record(i, absl::OkStatus(), value->value_or("<missing>"));
      } else {
        Record(i, value.status(), std::nullopt);
      }
    };
  }
  // Waits until every call completed, up to `timeout`.
  bool AllDone(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_ == runs_.size(); });
  }
  size_t Runs(size_t i) const {
    std::lock_guard<std::mutex> lock(mu_);
    return runs_[i];
  }
  absl::Status Status(size_t i) const {
    std::lock_guard<std::mutex> lock(mu_);
    return statuses_[i];
  }
  std::optional<std::string> Value(size_t i) const {
    std::lock_guard<std::mutex> lock(mu_);
    return values_[i];
  }

 private:
  void Record(size_t i, absl::Status status, std::optional<std::string> value) {
    std::lock_guard<std::mutex> lock(mu_);
    if (runs_[i]++ == 0) ++done_;
    statuses_[i] = std::move(status);
    values_[i] = std::move(value);
    cv_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<absl::Status> statuses_;
  std::vector<size_t> runs_;
  std::vector<std::optional<std::string>> values_;
  size_t done_ = 0;
};

TEST_P(BackendConformanceTest, AsyncCallsHaveTheBlockingCallsSemantics) {
  auto client = NewClient();
  Completions writes(2);
  {
    // The key and value are copied before the call returns.
    std::string key = Key("a"), value = "one";
    client->UpdateAsync(Context(), key, value, /*lease=*/false, writes.StatusOf(0));
    key.assign("overwritten");
    value.assign("overwritten");
  }
  client->UpdateAsync(Context(), Key("leased"), "two", /*lease=*/true, writes.StatusOf(1));
  ASSERT_TRUE(writes.AllDone(Timeout()));
  EXPECT_TRUE(writes.Status(0).ok()) << writes.Status(0);
  EXPECT_TRUE(writes.Status(1).ok()) << writes.Status(1);
  EXPECT_THAT(ListValues(*client, prefix()),
              UnorderedElementsAre(Pair(Key("a"), "one"), Pair(Key("leased"), "two")));
  EXPECT_EQ(GetValue(*client, Key("a"))->lease_id, 0);
  EXPECT_NE(GetValue(*client, Key("leased"))->lease_id, 0);

  Completions reads(2);
  client->GetAsync(Context(), Key("a"), reads.ValueOf(0));
  client->GetAsync(Context(), Key("missing"), reads.ValueOf(1));
  ASSERT_TRUE(reads.AllDone(Timeout()));
  EXPECT_EQ(reads.Value(0), "one");
  EXPECT_EQ(reads.Value(1), "<missing>");

  Completions deletes(2);
  client->DeleteAsync(Context(), Key("a"), deletes.StatusOf(0));
  client->DeleteAsync(Context(), Key("never-written"), deletes.StatusOf(1));
  ASSERT_TRUE(deletes.AllDone(Timeout()));
  EXPECT_TRUE(deletes.Status(0).ok()) << deletes.Status(0);
  EXPECT_TRUE(deletes.Status(1).ok()) << deletes.Status(1);
  EXPECT_TRUE(Missing(*client, Key("a")));
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(writes.Runs(i) + reads.Runs(i) + deletes.Runs(i), 3u) << "each completion runs once";
  }
}

TEST_P(BackendConformanceTest, ManyAsyncWritesInFlightFromOneThreadAllLand) {
  auto client = NewClient();
  constexpr size_t kKeys = 500;
  Completions writes(kKeys);
  for (size_t i = 0; i < kKeys; ++i) {
    client->UpdateAsync(Context(), Key(absl::StrCat("k", i)), absl::StrCat("v", i), i % 2 == 0,
                        writes.StatusOf(i));
  }
  ASSERT_TRUE(writes.AllDone(Timeout()));
  for (size_t i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(writes.Status(i).ok()) << i << ": " << writes.Status(i);
    ASSERT_EQ(writes.Runs(i), 1u) << i;
  }
  StringMap values = ListValues(*client, prefix());
  ASSERT_EQ(values.size(), kKeys);
  for (size_t i = 0; i < kKeys; ++i) {
    EXPECT_EQ(values[Key(absl::StrCat("k", i))], absl::StrCat("v", i));
  }
}

TEST_P(BackendConformanceTest, AsyncCallsReportBadInputAndDoneContextsBeforeReturning) {
  auto client = NewClient();
  auto [ctx, cancel] = WithCancel(Context());
  cancel();
  Completions calls(5);
  client->UpdateAsync(Context(), "", "v", false, calls.StatusOf(0));
  client->UpdateAsync(Context(), Key("big"), std::string(kMaxValueBytes + 1, 'x'), false,
                      calls.StatusOf(1));
  client->GetAsync(Context(), "", calls.ValueOf(2));
  client->UpdateAsync(ctx, Key("a"), "v", false, calls.StatusOf(3));
  client->DeleteAsync(ctx, Key("a"), calls.StatusOf(4));
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(calls.Runs(i), 1u) << i << " ran before returning";
  EXPECT_EQ(calls.Status(0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls.Status(1).code(), absl::StatusCode::kResourceExhausted) << "too large";
  EXPECT_EQ(calls.Status(2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls.Status(3).code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls.Status(4).code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(Missing(*client, Key("a")));
  EXPECT_TRUE(Missing(*client, Key("big")));
}

TEST_P(BackendConformanceTest, AsyncCallsInFlightAtCloseCompleteOnceAndLaterOnesAreRefused) {
  auto client = factory().NewClient();
  constexpr size_t kKeys = 200;
  Completions writes(kKeys);
  for (size_t i = 0; i < kKeys; ++i) {
    client->UpdateAsync(Context(), Key(absl::StrCat("k", i)), "v", /*lease=*/true,
                        writes.StatusOf(i));
  }
  client->Close();
  ASSERT_TRUE(writes.AllDone(Timeout())) << "every call in flight completes";
  for (size_t i = 0; i < kKeys; ++i) {
    const absl::StatusCode code = writes.Status(i).code();
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kFailedPrecondition ||
                code == absl::StatusCode::kCancelled || code == absl::StatusCode::kUnavailable)
        << i << ": " << writes.Status(i);
  }
  Completions later(2);
  client->UpdateAsync(Context(), Key("later"), "v", false, later.StatusOf(0));
  client->GetAsync(Context(), Key("later"), later.ValueOf(1));
  ASSERT_TRUE(later.AllDone(Timeout()));
  EXPECT_EQ(later.Status(0).code(), absl::StatusCode::kFailedPrecondition) << later.Status(0);
  EXPECT_EQ(later.Status(1).code(), absl::StatusCode::kFailedPrecondition) << later.Status(1);
  for (size_t i = 0; i < kKeys; ++i) EXPECT_EQ(writes.Runs(i), 1u) << i;
}

TEST_P(BackendConformanceTest, AsyncCallCompletionMayStartTheNextCall) {
  auto client = NewClient();
  constexpr int kChain = 50;
  std::mutex mu;
  std::condition_variable cv;
  int written = 0;
  absl::Status failure;
  std::function<void(int)> write_from = [&](int i) {
    client->UpdateAsync(Context(), Key(absl::StrCat("k", i)), "v", false,
                        [&, i](absl::Status status) {
                          if (status.ok() && i + 1 < kChain) {
                            write_from(i + 1);
                          }
                          std::lock_guard<std::mutex> lock(mu);
                          if (!status.ok()) failure = status;
                          ++written;
                          cv.notify_all();
                        });
  };
  write_from(0);
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, Timeout(), [&] { return written == kChain || !failure.ok(); }));
  EXPECT_TRUE(failure.ok()) << failure;
  lock.unlock();
  EXPECT_EQ(ListValues(*client, prefix()).size(), static_cast<size_t>(kChain));
}

}  // namespace
}  // namespace kvstore::testing

// Bad input through the stores, on the in-memory backend: values the user's key type cannot
// parse, values over the backend's limit, empty and long key names, prefixes with and without
// slashes, and bytes that are not UTF-8.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "kvstore/store/shared_store.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "prometheus/registry.h"
#include "tests/support/eventually.h"
#include "tests/support/metrics_reader.h"
#include "tests/support/recording_observer.h"
#include "tests/support/recording_rate_limiter.h"

namespace kvstore::store {
namespace {

using ::kvstore::testing::Eventually;
using ::kvstore::testing::ReadMetric;
using ::kvstore::testing::RecordingObserver;
using ::kvstore::testing::RecordingRateLimiter;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Event = RecordingObserver::Event;

constexpr char kPrefix[] = "cilium/state/bad/v1";

Event Updated(std::string key, std::string value) {
  return RecordingObserver::Update(std::move(key), std::move(value));
}
Event Deleted(std::string key, std::string value) {
  return RecordingObserver::Delete(std::move(key), std::move(value));
}

// A user key type that cannot parse values starting with "bad".
class PickyKey final : public LocalKey {
 public:
  PickyKey() = default;
  PickyKey(std::string name, std::string value) : pair_(std::move(name), std::move(value)) {}

  std::string GetKeyName() const override { return pair_.key; }
  absl::StatusOr<std::string> Marshal() const override { return pair_.value; }
  absl::Status Unmarshal(std::string_view key, std::string_view data) override {
    if (data.starts_with("bad")) return absl::InvalidArgumentError("unparsable value");
    return pair_.Unmarshal(key, data);
  }
  std::unique_ptr<LocalKey> DeepKeyCopy() const override {
    return std::make_unique<PickyKey>(*this);
  }

 private:
  KVPair pair_;
};

std::unique_ptr<Key> NewPickyKey() { return std::make_unique<PickyKey>(); }

// Name -> value of a SharedStore's view.
std::map<std::string, std::string> ViewOf(const SharedStore& store) {
  std::map<std::string, std::string> view;
  for (const auto& [name, key] : store.SharedKeysMap()) {
    absl::StatusOr<std::string> value = key->Marshal();
    view[name] = value.ok() ? *value : "<marshal error>";
  }
  return view;
}

class StoreBadInputTest : public ::testing::Test {
 protected:
  std::optional<std::string> ValueAt(const std::string& key) {
    auto value = writer_->Get(Context(), key);
    EXPECT_TRUE(value.ok()) << value.status();
    return value.ok() ? *value : std::nullopt;
  }

  void Put(const std::string& key, const std::string& value) {
    ASSERT_TRUE(writer_->Update(Context(), key, value, false).ok()) << key;
  }

  absl::StatusOr<std::unique_ptr<SharedStore>> Join(std::string prefix,
                                                    KeyCreator creator = KVPairCreator) {
    Configuration config;
    config.prefix = std::move(prefix);
    config.key_creator = std::move(creator);
    config.backend = agent_;
    config.observer = observer_;
    return SharedStore::Join(std::move(config));
  }

  std::shared_ptr<memory::InMemoryStore> memory_ = memory::InMemoryStore::Create();
  std::shared_ptr<Backend> agent_ = memory_->NewClient("agent");
  std::shared_ptr<Backend> writer_ = memory_->NewClient("writer");
  std::shared_ptr<RecordingObserver> observer_ = std::make_shared<RecordingObserver>();
};

// ---- WatchStore ----

// Runs Watch on a thread until Stop() or destruction.
class WatchRun {
 public:
  WatchRun(WatchStore& store, WatchStoreBackend& backend, std::string prefix) {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    thread_ = std::thread([this, &store, &backend, prefix] { store.Watch(ctx_, backend, prefix); });
  }
  ~WatchRun() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    cancel_();
    thread_.join();
  }

 private:
  Context ctx_;
  CancelFunc cancel_;
  std::thread thread_;
};

using WatchStoreBadInputTest = StoreBadInputTest;

TEST_F(WatchStoreBadInputTest, UnparsableValuesAreSkippedAndTheOtherKeysDelivered) {
  Put("w/a", "ok-a");
  Put("w/b", "bad-b");
  Put("w/c", "ok-c");
  auto store = NewRestartableWatchStore("c1", NewPickyKey, observer_);
  WatchRun run(*store, *agent_, "w");
  ASSERT_TRUE(Eventually([&] { return store->Synced(); }));

  Put("w/b", "ok-b");   // now parsable: delivered
  Put("w/a", "bad-a");  // unparsable: skipped, the store keeps "ok-a"
  Put("w/d", "ok-d");
  ASSERT_TRUE(writer_->Delete(Context(), "w/a").ok());
  ASSERT_TRUE(observer_->WaitForEvents(5));
  EXPECT_THAT(observer_->Events(),
              ElementsAre(Updated("a", "ok-a"), Updated("c", "ok-c"), Updated("b", "ok-b"),
                          Updated("d", "ok-d"), Deleted("a", "ok-a")));
  EXPECT_EQ(store->NumEntries(), 3u);
}

TEST_F(WatchStoreBadInputTest, KeyWhoseValueBecameUnparsableIsDeletedAtTheNextListDone) {
  Put("w/a", "ok-a");
  Put("w/b", "ok-b");
  auto store = NewRestartableWatchStore("c1", NewPickyKey, observer_);
  {
    WatchRun run(*store, *agent_, "w/");
    ASSERT_TRUE(observer_->WaitForEvents(2));
  }
  // While no watch runs (a reconnection), "a" gets a value the key type cannot parse: the re-list
  // skips it, so it stays stale and is reported deleted like a key that vanished.
  Put("w/a", "bad-a");
  WatchRun run(*store, *agent_, "w/");
  ASSERT_TRUE(Eventually([&] { return store->Synced(); }));
  EXPECT_THAT(observer_->Events(), ElementsAre(Updated("a", "ok-a"), Updated("b", "ok-b"),
                                               Updated("b", "ok-b"), Deleted("a", "ok-a")));
  EXPECT_EQ(store->NumEntries(), 1u);
}

TEST_F(WatchStoreBadInputTest, PrefixWithOrWithoutSlashesSeesOnlyItsChildren) {
  Put("p", "the prefix itself");
  Put("pa/x", "a sibling sharing bytes");
  Put("p/a", "child");
  Put("p//b", "child with an empty first part");
  for (const std::string prefix : {"p", "p/", "p///"}) {
    SCOPED_TRACE(prefix);
    auto observer = std::make_shared<RecordingObserver>();
    auto store = NewRestartableWatchStore("c1", KVPairCreator, observer);
    WatchRun run(*store, *agent_, prefix);
    ASSERT_TRUE(Eventually([&] { return store->Synced(); }));
    EXPECT_THAT(observer->Events(),
                UnorderedElementsAre(Updated("a", "child"),
                                     Updated("/b", "child with an empty first part")));
  }
}

TEST_F(WatchStoreBadInputTest, ArbitraryBytesInNamesAndValuesRoundTrip) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"", "empty name: the key is the prefix with its slash"},
      {std::string("nul\0name", 8), std::string("nul\0value", 9)},
      {"\xff\xfe\x80", "\xc3\x28\xa0\xa1"},
      {std::string(64 * 1024, 'n'), std::string(1 << 20, 'v')},
  };
  auto store = NewRestartableWatchStore("c1", KVPairCreator, observer_);
  WatchRun run(*store, *agent_, "w");
  ASSERT_TRUE(Eventually([&] { return store->Synced(); }));
  std::vector<Event> want;
  for (const auto& [name, value] : pairs) {
    Put("w/" + name, value);
    want.push_back(Updated(name, value));
  }
  for (const auto& [name, value] : pairs) {
    ASSERT_TRUE(writer_->Delete(Context(), "w/" + name).ok());
    want.push_back(Deleted(name, value));
  }
  ASSERT_TRUE(observer_->WaitForEvents(want.size()));
  EXPECT_TRUE(observer_->Events() == want) << "events differ in their bytes";
  EXPECT_EQ(store->NumEntries(), 0u);
}

// ---- SharedStore ----

using SharedStoreBadInputTest = StoreBadInputTest;

TEST_F(SharedStoreBadInputTest, UnparsableValuesAreSkippedAndTheOtherKeysDelivered) {
  Put(JoinPath(kPrefix, "listed-bad"), "bad value");
  Put(JoinPath(kPrefix, "listed-ok"), "ok");
  auto store = Join(kPrefix, NewPickyKey);
  ASSERT_TRUE(store.ok()) << store.status();
  Put(JoinPath(kPrefix, "live-bad"), "bad value");
  Put(JoinPath(kPrefix, "listed-ok"), "bad update");  // skipped: the old value stays
  Put(JoinPath(kPrefix, "live-ok"), "ok too");
  // An unparsable value of our own is written, but never enters the view either.
  ASSERT_TRUE((*store)->UpdateLocalKeySync(Context(), PickyKey("local-bad", "bad local")).ok());
  Put(JoinPath(kPrefix, "last"), "ok");

  ASSERT_TRUE(Eventually([&] { return ViewOf(**store).contains("last"); }));
  EXPECT_EQ(ViewOf(**store), (std::map<std::string, std::string>{
                                 {"listed-ok", "ok"}, {"live-ok", "ok too"}, {"last", "ok"}}));
  EXPECT_EQ((*store)->NumEntries(), 3);
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "local-bad")), "bad local");
  (*store)->Close(Context());
}

TEST_F(SharedStoreBadInputTest, OversizedValueIsResourceExhaustedAndNotRemembered) {
  auto store = Join(kPrefix);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string too_big(kMaxValueBytes + 1, 'x');
  EXPECT_EQ((*store)->UpdateLocalKeySync(Context(), KVPair("huge", too_big)).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*store)->UpdateKeySync(Context(), KVPair("huge", too_big), false).code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(
      (*store)
          ->UpdateLocalKeySync(Context(), KVPair("at-limit", std::string(kMaxValueBytes, 'v')))
          .ok());
  ASSERT_TRUE(Eventually([&] { return (*store)->NumEntries() == 1; }));
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "huge")), std::nullopt);

  // Close deletes what was remembered as local: only the key that was written.
  (*store)->Close(Context());
  EXPECT_THAT(observer_->Events(),
              ::testing::Contains(Deleted("at-limit", std::string(kMaxValueBytes, 'v'))));
  for (const Event& event : observer_->Events()) EXPECT_NE(event.key, "huge");
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "at-limit")), std::nullopt);
}

TEST_F(SharedStoreBadInputTest, OversizedKeyNameIsResourceExhausted) {
  auto store = Join(kPrefix);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string huge_name(kMaxValueBytes + 1, 'n');
  EXPECT_EQ((*store)->UpdateLocalKeySync(Context(), KVPair(huge_name, "v")).code(),
            absl::StatusCode::kResourceExhausted);
  (*store)->Close(Context());
  EXPECT_THAT(observer_->Events(), IsEmpty());
}

TEST_F(SharedStoreBadInputTest, PrefixWithOrWithoutSlashUsesOnePath) {
  Put("p", "the prefix itself");
  Put("pa/x", "a sibling sharing bytes");
  auto plain = Join("p");
  auto slashed = Join("p//");
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(slashed.ok()) << slashed.status();
  ASSERT_TRUE((*plain)->UpdateLocalKeySync(Context(), KVPair("a", "from plain")).ok());
  ASSERT_TRUE((*slashed)->UpdateLocalKeySync(Context(), KVPair("b", "from slashed")).ok());
  EXPECT_EQ(ValueAt("p/a"), "from plain");
  EXPECT_EQ(ValueAt("p/b"), "from slashed");
  const std::map<std::string, std::string> both = {{"a", "from plain"}, {"b", "from slashed"}};
  EXPECT_TRUE(Eventually([&] { return ViewOf(**plain) == both && ViewOf(**slashed) == both; }));
  (*plain)->Close(Context());
  (*slashed)->Close(Context());
}

TEST_F(SharedStoreBadInputTest, ArbitraryBytesInNamesAndValuesRoundTrip) {
  auto mine = Join(kPrefix);
  auto theirs = Join(kPrefix);
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  const std::map<std::string, std::string> pairs = {
      {std::string("nul\0name", 8), std::string("nul\0value", 9)},
      {"\xff\xfe\x80", "\xc3\x28\xa0\xa1"},
      {"a/\x01/b", ""},
      {std::string(64 * 1024, 'n'), std::string(1 << 20, 'v')},
  };
  for (const auto& [name, value] : pairs) {
    ASSERT_TRUE((*mine)->UpdateLocalKeySync(Context(), KVPair(name, value)).ok());
    EXPECT_EQ(ValueAt(std::string(kPrefix) + "/" + name), value);
  }
  EXPECT_TRUE(Eventually([&] { return ViewOf(**theirs) == pairs; }));

  // Deleted behind the store's back, a local key comes back with its exact bytes.
  const std::string odd_path = std::string(kPrefix) + "/\xff\xfe\x80";
  ASSERT_TRUE(writer_->Delete(Context(), odd_path).ok());
  EXPECT_TRUE(Eventually([&] { return ValueAt(odd_path) == "\xc3\x28\xa0\xa1"; }));

  (*mine)->Close(Context());
  EXPECT_TRUE(Eventually([&] { return ViewOf(**theirs).empty(); }));
  (*theirs)->Close(Context());
}

// An empty name (or one that path joining changes, such as "b/") would be written at a path the
// watch reports under another name, or at the prefix key itself: it is rejected.
TEST_F(SharedStoreBadInputTest, EmptyLocalKeyNameIsInvalidArgument) {
  auto store = Join(kPrefix);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->UpdateLocalKeySync(Context(), KVPair("", "v")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->UpdateKeySync(Context(), KVPair("", "v"), true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*store)->UpdateLocalKeySync(Context(), KVPair("b/", "v")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValueAt(kPrefix), std::nullopt);
  (*store)->Close(Context());
}

// The fuzzer's finding behind the rule above: were the local key "" accepted, it would live at
// the prefix key while the watch reports "<prefix>/" under the name "" too, so its delete would be
// taken for a delete of the local key and the entry never removed.
TEST_F(SharedStoreBadInputTest, DeleteOfAKeyNamedLikeAnEmptyLocalKeyIsSeen) {
  auto store = Join(kPrefix);
  ASSERT_TRUE(store.ok()) << store.status();
  (*store)->UpdateLocalKeySync(Context(), KVPair("", "local")).IgnoreError();
  Put(std::string(kPrefix) + "/", "theirs");
  ASSERT_TRUE(Eventually([&] { return ViewOf(**store).contains(""); }));
  ASSERT_TRUE(writer_->Delete(Context(), std::string(kPrefix) + "/").ok());
  EXPECT_TRUE(Eventually([&] { return ViewOf(**store).empty(); }));
  (*store)->Close(Context());
}

// ---- SyncStore ----

class SyncStoreBadInputTest : public StoreBadInputTest {
 protected:
  void TearDown() override { Stop(); }

  SyncStore& NewStore() {
    WorkqueueSyncStoreOptions opts;
    opts.rate_limiter = limiter_;
    opts.metrics = metrics_;
    store_ = NewWorkqueueSyncStore("c1", agent_, kPrefix, std::move(opts));
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    runner_ = std::thread([this] { store_->Run(ctx_); });
    return *store_;
  }

  void Stop() {
    if (!runner_.joinable()) return;
    cancel_();
    runner_.join();
  }

  size_t WhenCalls(const std::string& item) const {
    size_t n = 0;
    for (const auto& call : limiter_->Calls()) {
      n += call == RecordingRateLimiter::WhenCall(item) ? 1 : 0;
    }
    return n;
  }

  double Errors() const {
    return ReadMetric(registry_, "cilium_kvstore_sync_errors_total",
                      {{"scope", GetScopeFromKey(kPrefix)}, {"source_cluster", "c1"}})
        .value_or(-1);
  }

  // A short fixed back-off keeps the retries of a failing key coming without spinning.
  std::shared_ptr<RecordingRateLimiter> limiter_ =
      std::make_shared<RecordingRateLimiter>(std::chrono::milliseconds(20));
  prometheus::Registry registry_;
  std::shared_ptr<Metrics> metrics_ = std::make_shared<Metrics>(registry_);
  std::unique_ptr<SyncStore> store_;
  Context ctx_;
  CancelFunc cancel_;
  std::thread runner_;
};

// A permanent error (ResourceExhausted) is retried like any other, as in Cilium: the key keeps
// failing with back-off, the other keys are written meanwhile, and a smaller value ends it.
TEST_F(SyncStoreBadInputTest, OversizedValueIsRetriedWithoutBlockingOtherKeys) {
  SyncStore& store = NewStore();
  ASSERT_TRUE(
      store.UpsertKey(Context(), KVPair("huge", std::string(kMaxValueBytes + 1, 'x'))).ok());
  ASSERT_TRUE(store.UpsertKey(Context(), KVPair("small", "ok")).ok());
  EXPECT_TRUE(Eventually([&] { return ValueAt(JoinPath(kPrefix, "small")) == "ok"; }));
  EXPECT_TRUE(Eventually([&] { return WhenCalls("huge") >= 3; }));
  EXPECT_GE(Errors(), 3);
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "huge")), std::nullopt);

  ASSERT_TRUE(store.UpsertKey(Context(), KVPair("huge", "smaller now")).ok());
  EXPECT_TRUE(Eventually([&] { return ValueAt(JoinPath(kPrefix, "huge")) == "smaller now"; }));
  EXPECT_TRUE(Eventually(
      [&] { return limiter_->Calls().back() == RecordingRateLimiter::ForgetCall("huge"); }));
}

// Consequence of the above: a key that can never be written, upserted before Synced(), holds back
// the synced canary until a writable value replaces it.
TEST_F(SyncStoreBadInputTest, OversizedValueHoldsBackTheSyncedKeyUntilReplaced) {
  SyncStore& store = NewStore();
  ASSERT_TRUE(
      store.UpsertKey(Context(), KVPair("huge", std::string(kMaxValueBytes + 1, 'x'))).ok());
  ASSERT_TRUE(store.Synced(Context()).ok());
  const std::string canary = SyncedKeyPath("c1", kPrefix);
  ASSERT_TRUE(Eventually([&] { return WhenCalls("huge") >= 3; }));
  EXPECT_EQ(ValueAt(canary), std::nullopt);

  ASSERT_TRUE(store.UpsertKey(Context(), KVPair("huge", "fits")).ok());
  EXPECT_TRUE(Eventually([&] { return ValueAt(canary).has_value(); }));
}

TEST_F(SyncStoreBadInputTest, OversizedKeyNameIsRetriedLikeAnyFailure) {
  SyncStore& store = NewStore();
  const std::string huge_name(kMaxValueBytes + 1, 'n');
  ASSERT_TRUE(store.UpsertKey(Context(), KVPair(huge_name, "v")).ok());
  EXPECT_TRUE(Eventually([&] { return WhenCalls(huge_name) >= 2; }));
  ASSERT_TRUE(store.DeleteKey(Context(), KVPair(huge_name, "")).ok());
  // The delete of a key never written is harmless; the retries end with it.
  EXPECT_TRUE(Eventually(
      [&] { return limiter_->Calls().back() == RecordingRateLimiter::ForgetCall(huge_name); }));
}

TEST_F(SyncStoreBadInputTest, ArbitraryBytesInNamesAndValuesRoundTrip) {
  SyncStore& store = NewStore();
  const std::map<std::string, std::string> pairs = {
      {std::string("nul\0name", 8), std::string("nul\0value", 9)},
      {"\xff\xfe\x80", "\xc3\x28\xa0\xa1"},
      {std::string(64 * 1024, 'n'), std::string(1 << 20, 'v')},
  };
  for (const auto& [name, value] : pairs)
    ASSERT_TRUE(store.UpsertKey(Context(), KVPair(name, value)).ok());
  for (const auto& [name, value] : pairs) {
    const std::string path = std::string(kPrefix) + "/" + name;
    EXPECT_TRUE(Eventually([&] { return ValueAt(path) == value; })) << name.size();
  }
}

// The empty name would be written at the prefix key itself, "b/" where the watch reports "b".
TEST_F(SyncStoreBadInputTest, EmptyKeyNameIsInvalidArgument) {
  SyncStore& store = NewStore();
  EXPECT_EQ(store.UpsertKey(Context(), KVPair("", "v")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.UpsertKey(Context(), KVPair("b/", "v")).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstore::store

// Bad input through the stores, on the in-memory backend: values the user's key type cannot
// parse, values over the backend's limit, empty and long key names, prefixes with and without
// slashes, and bytes that are not UTF-8. The stores and the in-memory server run on one
// ManualExecutor with a FakeClock: the test runs what is queued (Run) and moves time for retries.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/task.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/executor.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "kvstore/store/shared_store.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "prometheus/registry.h"
#include "store/async_stores.h"
#include "tests/support/driven_shared_store.h"
#include "tests/support/metrics_reader.h"
#include "tests/support/recording_observer.h"
#include "tests/support/recording_rate_limiter.h"

namespace kvstore::store {
namespace {

using ::kvstore::testing::DrivenStore;
using ::kvstore::testing::ReadMetric;
using ::kvstore::testing::RecordingObserver;
using ::kvstore::testing::RecordingRateLimiter;
using ::kvstore::testing::WhileRunning;
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

  // Joins on the executor (Join waits for the initial list: this thread runs the executor
  // meanwhile). Null on failure (a test failure).
  DrivenStore Join(std::string prefix, KeyCreator creator = KVPairCreator) {
    Configuration config;
    config.prefix = std::move(prefix);
    config.key_creator = std::move(creator);
    config.backend = agent_;
    config.observer = observer_;
    config.clock = clock_;
    config.executor = executor_;
    absl::StatusOr<std::unique_ptr<SharedStore>> store =
        WhileRunning(*executor_, [&] { return SharedStore::Join(std::move(config)); });
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? DrivenStore(executor_.get(), std::move(*store)) : DrivenStore();
  }

  // Runs what the executor has queued: watch deliveries, the stores' tasks and writes.
  void Run() { executor_->RunUntilIdle(); }
  void Advance(Clock::duration d) {
    clock_->Advance(d);
    Run();
  }

  memory::InMemoryOptions MemoryOptions() {
    memory::InMemoryOptions opts;
    opts.clock = clock_;
    opts.executor = executor_;
    return opts;
  }

  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::shared_ptr<ManualExecutor> executor_ = std::make_shared<ManualExecutor>();
  std::shared_ptr<memory::InMemoryStore> memory_ = memory::InMemoryStore::Create(MemoryOptions());
  std::shared_ptr<Backend> agent_ = memory_->NewClient("agent");
  std::shared_ptr<Backend> writer_ = memory_->NewClient("writer");
  std::shared_ptr<RecordingObserver> observer_ = std::make_shared<RecordingObserver>();
};

// ---- WatchStore ----

// Runs WatchAsync on the executor until Stop() or destruction (which run the executor until
// the watch returned).
class WatchRun {
 public:
  WatchRun(internal::AsyncWatchStore& store, ManualExecutor& executor, WatchStoreBackend& backend,
           std::string prefix)
      : executor_(executor) {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    kvstore::internal::Spawn(executor, store.WatchAsync(executor, ctx_, backend, prefix));
    executor_.RunUntilIdle();
  }
  ~WatchRun() { Stop(); }
  void Stop() {
    cancel_();
    executor_.RunUntilIdle();
  }

 private:
  ManualExecutor& executor_;
  Context ctx_;
  CancelFunc cancel_;
};

using WatchStoreBadInputTest = StoreBadInputTest;

TEST_F(WatchStoreBadInputTest, UnparsableValuesAreSkippedAndTheOtherKeysDelivered) {
  Put("w/a", "ok-a");
  Put("w/b", "bad-b");
  Put("w/c", "ok-c");
  auto store = internal::NewAsyncRestartableWatchStore("c1", NewPickyKey, observer_);
  WatchRun run(*store, *executor_, *agent_, "w");
  ASSERT_TRUE(store->Synced());

  Put("w/b", "ok-b");   // now parsable: delivered
  Put("w/a", "bad-a");  // unparsable: skipped, the store keeps "ok-a"
  Put("w/d", "ok-d");
  ASSERT_TRUE(writer_->Delete(Context(), "w/a").ok());
  Run();
  EXPECT_THAT(observer_->Events(),
              ElementsAre(Updated("a", "ok-a"), Updated("c", "ok-c"), Updated("b", "ok-b"),
                          Updated("d", "ok-d"), Deleted("a", "ok-a")));
  EXPECT_EQ(store->NumEntries(), 3u);
}

TEST_F(WatchStoreBadInputTest, KeyWhoseValueBecameUnparsableIsDeletedAtTheNextListDone) {
  Put("w/a", "ok-a");
  Put("w/b", "ok-b");
  auto store = internal::NewAsyncRestartableWatchStore("c1", NewPickyKey, observer_);
  {
    WatchRun run(*store, *executor_, *agent_, "w/");
    EXPECT_EQ(observer_->NumEvents(), 2u);
  }
  // While no watch runs (a reconnection), "a" gets a value the key type cannot parse: the re-list
  // skips it, so it stays stale and is reported deleted like a key that vanished.
  Put("w/a", "bad-a");
  WatchRun run(*store, *executor_, *agent_, "w/");
  ASSERT_TRUE(store->Synced());
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
    auto store = internal::NewAsyncRestartableWatchStore("c1", KVPairCreator, observer);
    WatchRun run(*store, *executor_, *agent_, prefix);
    ASSERT_TRUE(store->Synced());
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
  auto store = internal::NewAsyncRestartableWatchStore("c1", KVPairCreator, observer_);
  WatchRun run(*store, *executor_, *agent_, "w");
  ASSERT_TRUE(store->Synced());
  std::vector<Event> want;
  for (const auto& [name, value] : pairs) {
    Put("w/" + name, value);
    want.push_back(Updated(name, value));
  }
  for (const auto& [name, value] : pairs) {
    ASSERT_TRUE(writer_->Delete(Context(), "w/" + name).ok());
    want.push_back(Deleted(name, value));
  }
  Run();
  EXPECT_TRUE(observer_->Events() == want) << "events differ in their bytes";
  EXPECT_EQ(store->NumEntries(), 0u);
}

// ---- SharedStore ----

using SharedStoreBadInputTest = StoreBadInputTest;

TEST_F(SharedStoreBadInputTest, UnparsableValuesAreSkippedAndTheOtherKeysDelivered) {
  Put(JoinPath(kPrefix, "listed-bad"), "bad value");
  Put(JoinPath(kPrefix, "listed-ok"), "ok");
  auto store = Join(kPrefix, NewPickyKey);
  ASSERT_NE(store, nullptr);
  Put(JoinPath(kPrefix, "live-bad"), "bad value");
  Put(JoinPath(kPrefix, "listed-ok"), "bad update");  // skipped: the old value stays
  Put(JoinPath(kPrefix, "live-ok"), "ok too");
  // An unparsable value of our own is written, but never enters the view either.
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), PickyKey("local-bad", "bad local")).ok());
  Put(JoinPath(kPrefix, "last"), "ok");

  Run();
  ASSERT_TRUE(ViewOf(*store.get()).contains("last"));
  EXPECT_EQ(ViewOf(*store.get()), (std::map<std::string, std::string>{
                                      {"listed-ok", "ok"}, {"live-ok", "ok too"}, {"last", "ok"}}));
  EXPECT_EQ(store->NumEntries(), 3);
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "local-bad")), "bad local");
  store.Close(Context());
}

TEST_F(SharedStoreBadInputTest, OversizedValueIsResourceExhaustedAndNotRemembered) {
  auto store = Join(kPrefix);
  ASSERT_NE(store, nullptr);
  const std::string too_big(kMaxValueBytes + 1, 'x');
  EXPECT_EQ(store->UpdateLocalKeySync(Context(), KVPair("huge", too_big)).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store->UpdateKeySync(Context(), KVPair("huge", too_big), false).code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(
      store->UpdateLocalKeySync(Context(), KVPair("at-limit", std::string(kMaxValueBytes, 'v')))
          .ok());
  Run();
  ASSERT_TRUE(store->NumEntries() == 1);
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "huge")), std::nullopt);

  // Close deletes what was remembered as local: only the key that was written.
  store.Close(Context());
  EXPECT_THAT(observer_->Events(),
              ::testing::Contains(Deleted("at-limit", std::string(kMaxValueBytes, 'v'))));
  for (const Event& event : observer_->Events()) EXPECT_NE(event.key, "huge");
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "at-limit")), std::nullopt);
}

TEST_F(SharedStoreBadInputTest, OversizedKeyNameIsResourceExhausted) {
  auto store = Join(kPrefix);
  ASSERT_NE(store, nullptr);
  const std::string huge_name(kMaxValueBytes + 1, 'n');
  EXPECT_EQ(store->UpdateLocalKeySync(Context(), KVPair(huge_name, "v")).code(),
            absl::StatusCode::kResourceExhausted);
  store.Close(Context());
  EXPECT_THAT(observer_->Events(), IsEmpty());
}

TEST_F(SharedStoreBadInputTest, PrefixWithOrWithoutSlashUsesOnePath) {
  Put("p", "the prefix itself");
  Put("pa/x", "a sibling sharing bytes");
  auto plain = Join("p");
  auto slashed = Join("p//");
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(slashed, nullptr);
  ASSERT_TRUE(plain->UpdateLocalKeySync(Context(), KVPair("a", "from plain")).ok());
  ASSERT_TRUE(slashed->UpdateLocalKeySync(Context(), KVPair("b", "from slashed")).ok());
  EXPECT_EQ(ValueAt("p/a"), "from plain");
  EXPECT_EQ(ValueAt("p/b"), "from slashed");
  const std::map<std::string, std::string> both = {{"a", "from plain"}, {"b", "from slashed"}};
  Run();
  EXPECT_TRUE(ViewOf(*plain.get()) == both && ViewOf(*slashed.get()) == both);
  plain.Close(Context());
  slashed.Close(Context());
}

TEST_F(SharedStoreBadInputTest, ArbitraryBytesInNamesAndValuesRoundTrip) {
  auto mine = Join(kPrefix);
  auto theirs = Join(kPrefix);
  ASSERT_NE(mine, nullptr);
  ASSERT_NE(theirs, nullptr);
  const std::map<std::string, std::string> pairs = {
      {std::string("nul\0name", 8), std::string("nul\0value", 9)},
      {"\xff\xfe\x80", "\xc3\x28\xa0\xa1"},
      {"a/\x01/b", ""},
      {std::string(64 * 1024, 'n'), std::string(1 << 20, 'v')},
  };
  for (const auto& [name, value] : pairs) {
    ASSERT_TRUE(mine->UpdateLocalKeySync(Context(), KVPair(name, value)).ok());
    EXPECT_EQ(ValueAt(std::string(kPrefix) + "/" + name), value);
  }
  Run();
  EXPECT_TRUE(ViewOf(*theirs.get()) == pairs);

  // Deleted behind the store's back, a local key comes back with its exact bytes.
  const std::string odd_path = std::string(kPrefix) + "/\xff\xfe\x80";
  ASSERT_TRUE(writer_->Delete(Context(), odd_path).ok());
  Run();
  EXPECT_TRUE(ValueAt(odd_path) == "\xc3\x28\xa0\xa1");

  mine.Close(Context());
  Run();
  EXPECT_TRUE(ViewOf(*theirs.get()).empty());
  theirs.Close(Context());
}

// An empty name (or one that path joining changes, such as "b/") would be written at a path the
// watch reports under another name, or at the prefix key itself: it is rejected.
TEST_F(SharedStoreBadInputTest, EmptyLocalKeyNameIsInvalidArgument) {
  auto store = Join(kPrefix);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->UpdateLocalKeySync(Context(), KVPair("", "v")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->UpdateKeySync(Context(), KVPair("", "v"), true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->UpdateLocalKeySync(Context(), KVPair("b/", "v")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValueAt(kPrefix), std::nullopt);
  store.Close(Context());
}

// The fuzzer's finding behind the rule above: were the local key "" accepted, it would live at
// the prefix key while the watch reports "<prefix>/" under the name "" too, so its delete would be
// taken for a delete of the local key and the entry never removed.
TEST_F(SharedStoreBadInputTest, DeleteOfAKeyNamedLikeAnEmptyLocalKeyIsSeen) {
  auto store = Join(kPrefix);
  ASSERT_NE(store, nullptr);
  store->UpdateLocalKeySync(Context(), KVPair("", "local")).IgnoreError();
  Put(std::string(kPrefix) + "/", "theirs");
  Run();
  ASSERT_TRUE(ViewOf(*store.get()).contains(""));
  ASSERT_TRUE(writer_->Delete(Context(), std::string(kPrefix) + "/").ok());
  Run();
  EXPECT_TRUE(ViewOf(*store.get()).empty());
  store.Close(Context());
}

// ---- SyncStore ----

class SyncStoreBadInputTest : public StoreBadInputTest {
 protected:
  void TearDown() override { Stop(); }

  SyncStore& NewStore() {
    WorkqueueSyncStoreOptions opts;
    opts.rate_limiter = limiter_;
    opts.metrics = metrics_;
    opts.clock = clock_;
    // The backend writes on the executor too: the in-memory backend never blocks.
    store_ = internal::NewAsyncWorkqueueSyncStore("c1", agent_, kPrefix, std::move(opts),
                                                  executor_.get());
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    running_ = true;
    kvstore::internal::Spawn(*executor_, store_->RunAsync(*executor_, ctx_));
    return *store_;
  }

  void Stop() {
    if (!running_) return;
    running_ = false;
    cancel_();
    Run();
  }

  // Moves time by the limiter's back-off `n` times: `n` more retries of a failing key.
  void Retry(int n) {
    for (int i = 0; i < n; ++i) Advance(kBackoff);
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

  // A fixed back-off on the FakeClock: each retry comes when the test moves time by it.
  static constexpr std::chrono::milliseconds kBackoff{20};
  std::shared_ptr<RecordingRateLimiter> limiter_ = std::make_shared<RecordingRateLimiter>(kBackoff);
  prometheus::Registry registry_;
  std::shared_ptr<Metrics> metrics_ = std::make_shared<Metrics>(registry_);
  std::unique_ptr<internal::AsyncSyncStore> store_;
  Context ctx_;
  CancelFunc cancel_;
  bool running_ = false;
};

// A permanent error (ResourceExhausted) is retried like any other, as in Cilium: the key keeps
// failing with back-off, the other keys are written meanwhile, and a smaller value ends it.
TEST_F(SyncStoreBadInputTest, OversizedValueIsRetriedWithoutBlockingOtherKeys) {
  SyncStore& store = NewStore();
  ASSERT_TRUE(
      store.UpsertKey(Context(), KVPair("huge", std::string(kMaxValueBytes + 1, 'x'))).ok());
  ASSERT_TRUE(store.UpsertKey(Context(), KVPair("small", "ok")).ok());
  Run();
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "small")), "ok");
  EXPECT_EQ(WhenCalls("huge"), 1u);
  Retry(2);
  EXPECT_EQ(WhenCalls("huge"), 3u);
  EXPECT_EQ(Errors(), 3);
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "huge")), std::nullopt);

  ASSERT_TRUE(store.UpsertKey(Context(), KVPair("huge", "smaller now")).ok());
  Retry(1);  // the retry already waiting writes the new value
  EXPECT_EQ(ValueAt(JoinPath(kPrefix, "huge")), "smaller now");
  EXPECT_EQ(limiter_->Calls().back(), RecordingRateLimiter::ForgetCall("huge"));
  EXPECT_EQ(WhenCalls("huge"), 3u);
  EXPECT_EQ(clock_->NumTimers(), 0u);  // no retry left
}

// Consequence of the above: a key that can never be written, upserted before Synced(), holds back
// the synced canary until a writable value replaces it.
TEST_F(SyncStoreBadInputTest, OversizedValueHoldsBackTheSyncedKeyUntilReplaced) {
  SyncStore& store = NewStore();
  ASSERT_TRUE(
      store.UpsertKey(Context(), KVPair("huge", std::string(kMaxValueBytes + 1, 'x'))).ok());
  ASSERT_TRUE(store.Synced(Context()).ok());
  const std::string canary = SyncedKeyPath("c1", kPrefix);
  Run();
  Retry(2);
  ASSERT_EQ(WhenCalls("huge"), 3u);
  EXPECT_EQ(ValueAt(canary), std::nullopt);

  ASSERT_TRUE(store.UpsertKey(Context(), KVPair("huge", "fits")).ok());
  Retry(1);
  EXPECT_TRUE(ValueAt(canary).has_value());
}

TEST_F(SyncStoreBadInputTest, OversizedKeyNameIsRetriedLikeAnyFailure) {
  SyncStore& store = NewStore();
  const std::string huge_name(kMaxValueBytes + 1, 'n');
  ASSERT_TRUE(store.UpsertKey(Context(), KVPair(huge_name, "v")).ok());
  Run();
  Retry(1);
  EXPECT_EQ(WhenCalls(huge_name), 2u);
  ASSERT_TRUE(store.DeleteKey(Context(), KVPair(huge_name, "")).ok());
  // The delete of a key never written is harmless; the retries end with it.
  Retry(1);
  EXPECT_EQ(limiter_->Calls().back(), RecordingRateLimiter::ForgetCall(huge_name));
  EXPECT_EQ(clock_->NumTimers(), 0u);
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
  Run();
  for (const auto& [name, value] : pairs) {
    EXPECT_TRUE(ValueAt(std::string(kPrefix) + "/" + name) == value) << name.size();
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

#include "kvstore/store/shared_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/blocking_pool.h"
#include "core/guarded.h"
#include "core/watcher_producer.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/memory/in_memory_store.h"
#include "tests/support/eventually.h"

namespace kvstore::store {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using namespace std::chrono_literals;

constexpr char kPrefix[] = "cilium/state/shared/v1";

using kvstore::testing::Eventually;

std::string PathOf(const std::string& name) { return std::string(kPrefix) + "/" + name; }

// A key whose Unmarshal rejects values starting with "invalid" and whose Marshal can be made to
// fail.
class TestKey final : public LocalKey {
 public:
  TestKey() = default;
  TestKey(std::string name, std::string value, bool fail_marshal = false)
      : name_(std::move(name)), value_(std::move(value)), fail_marshal_(fail_marshal) {}

  std::string GetKeyName() const override { return name_; }
  absl::StatusOr<std::string> Marshal() const override {
    if (fail_marshal_) return absl::InvalidArgumentError("cannot marshal " + name_);
    return value_;
  }
  absl::Status Unmarshal(std::string_view key, std::string_view data) override {
    if (data.starts_with("invalid")) return absl::InvalidArgumentError("invalid data");
    name_ = std::string(key);
    value_ = std::string(data);
    return absl::OkStatus();
  }
  std::unique_ptr<LocalKey> DeepKeyCopy() const override {
    return std::make_unique<TestKey>(*this);
  }
  const std::string& value() const { return value_; }

 private:
  std::string name_, value_;
  bool fail_marshal_ = false;
};

std::unique_ptr<Key> NewTestKey() { return std::make_unique<TestKey>(); }

struct Observed {
  char kind;  // 'U' update, 'D' delete
  std::string name;
  std::string value;
  bool operator==(const Observed&) const = default;
};

void PrintTo(const Observed& o, std::ostream* os) {
  *os << o.kind << "(" << o.name << "=" << o.value << ")";
}

class RecordingObserver : public Observer {
 public:
  void OnUpdate(const Key& key) override {
    Record('U', key.GetKeyName(), dynamic_cast<const TestKey&>(key).value());
  }
  void OnDelete(const NamedKey& key) override {
    const auto* test_key = dynamic_cast<const TestKey*>(&key);
    Record('D', key.GetKeyName(), test_key != nullptr ? test_key->value() : "");
  }

  std::vector<Observed> Events() const {
    std::lock_guard<std::mutex> guard(mu_);
    return events_;
  }
  int Count(char kind, const std::string& name) const {
    std::lock_guard<std::mutex> guard(mu_);
    int n = 0;
    for (const Observed& o : events_) n += (o.kind == kind && o.name == name) ? 1 : 0;
    return n;
  }
  bool Saw(const Observed& wanted) const {
    std::lock_guard<std::mutex> guard(mu_);
    for (const Observed& o : events_) {
      if (o == wanted) return true;
    }
    return false;
  }
  bool Overlapped() const { return overlapped_; }

 private:
  void Record(char kind, std::string name, std::string value) {
    if (in_flight_.fetch_add(1) != 0) overlapped_ = true;
    {
      std::lock_guard<std::mutex> guard(mu_);
      events_.push_back({kind, std::move(name), std::move(value)});
    }
    in_flight_.fetch_sub(1);
  }

  std::atomic<int> in_flight_{0};
  std::atomic<bool> overlapped_{false};
  mutable std::mutex mu_;
  std::vector<Observed> events_;
};

// A backend that never finishes the initial list: its watcher only closes when the watch ends.
class NeverListingBackend : public Backend {
 public:
  explicit NeverListingBackend(bool close_at_once = false) : close_at_once_(close_at_once) {}

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override {
    auto watcher = std::make_shared<Watcher>(std::string(prefix), capacity);
    if (close_at_once_) {
      watcher->Close();
    } else {
      internal::WatcherProducer(*watcher).SetStopHook([watcher] { watcher->Close(); });
      ctx.AddCallback([watcher] { watcher->Close(); });
    }
    return watcher;
  }
  absl::Status Update(const Context&, std::string_view, std::string_view, bool) override {
    return absl::UnavailableError("fake");
  }
  absl::Status Delete(const Context&, std::string_view) override {
    return absl::UnavailableError("fake");
  }
  void RegisterLeaseExpiredObserver(std::string_view,
                                    std::function<void(std::string_view)>) override {}
  absl::StatusOr<std::optional<std::string>> Get(const Context&, std::string_view) override {
    return absl::UnavailableError("fake");
  }
  absl::StatusOr<KeyValuePairs> ListPrefix(const Context&, std::string_view) override {
    return absl::UnavailableError("fake");
  }
  absl::StatusOr<bool> UpdateIfDifferent(const Context&, std::string_view, std::string_view,
                                         bool) override {
    return absl::UnavailableError("fake");
  }
  absl::StatusOr<bool> CreateOnly(const Context&, std::string_view, std::string_view,
                                  bool) override {
    return absl::UnavailableError("fake");
  }
  absl::Status DeletePrefix(const Context&, std::string_view) override {
    return absl::UnavailableError("fake");
  }
  BackendStatus Status() const override { return {}; }
  void Close() override {}

 private:
  const bool close_at_once_;
};

// Forwards every call to a real client; tests override what they change.
class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::shared_ptr<Backend> inner) : inner_(std::move(inner)) {}

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override {
    return inner_->ListAndWatch(ctx, prefix, capacity);
  }
  absl::Status Update(const Context& ctx, std::string_view key, std::string_view value,
                      bool lease) override {
    return inner_->Update(ctx, key, value, lease);
  }
  absl::Status Delete(const Context& ctx, std::string_view key) override {
    return inner_->Delete(ctx, key);
  }
  void RegisterLeaseExpiredObserver(std::string_view prefix,
                                    std::function<void(std::string_view)> fn) override {
    inner_->RegisterLeaseExpiredObserver(prefix, std::move(fn));
  }
  absl::StatusOr<std::optional<std::string>> Get(const Context& ctx,
                                                 std::string_view key) override {
    return inner_->Get(ctx, key);
  }
  absl::StatusOr<KeyValuePairs> ListPrefix(const Context& ctx, std::string_view prefix) override {
    return inner_->ListPrefix(ctx, prefix);
  }
  absl::StatusOr<bool> UpdateIfDifferent(const Context& ctx, std::string_view key,
                                         std::string_view value, bool lease) override {
    return inner_->UpdateIfDifferent(ctx, key, value, lease);
  }
  absl::StatusOr<bool> CreateOnly(const Context& ctx, std::string_view key, std::string_view value,
                                  bool lease) override {
    return inner_->CreateOnly(ctx, key, value, lease);
  }
  absl::Status DeletePrefix(const Context& ctx, std::string_view prefix) override {
    return inner_->DeletePrefix(ctx, prefix);
  }
  BackendStatus Status() const override { return inner_->Status(); }
  void Close() override { inner_->Close(); }

 protected:
  const std::shared_ptr<Backend> inner_;
};

// Its watches never report deletes: the store cannot notice a lost key by itself, so only its
// periodic sync can bring it back.
class DeleteBlindBackend : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  ~DeleteBlindBackend() override {
    std::lock_guard<std::mutex> guard(mu_);
    for (std::thread& pump : pumps_) pump.join();
  }

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override {
    std::shared_ptr<Watcher> from = inner_->ListAndWatch(ctx, prefix, capacity);
    auto to = std::make_shared<Watcher>(std::string(prefix), capacity);
    internal::WatcherProducer(*to).SetStopHook([from] { from->Stop(); });
    std::lock_guard<std::mutex> guard(mu_);
    pumps_.emplace_back([from, to, ctx] {
      while (std::optional<KeyValueEvent> event = from->Next()) {
        if (event->type == EventType::kDelete) continue;
        if (!to->Emit(*event, ctx)) break;
      }
      to->Close();
    });
    return to;
  }

 private:
  std::mutex mu_;  // guards pumps_
  std::vector<std::thread> pumps_;
};

// A slow backend: writes (UpdateIfDifferent) and deletes of one chosen key wait, before reaching
// the real client, until Open() or until their context is done. Records the order in which calls
// for that key reached the real client.
class GatedBackend : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;

  // Calls for `key` (an absolute path) wait from now on.
  void Hold(std::string key) {
    std::lock_guard<std::mutex> guard(mu_);
    held_key_ = std::move(key);
    open_ = false;
  }
  // Lets waiting and later calls through.
  void Open() {
    std::lock_guard<std::mutex> guard(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // Calls for the held key waiting now.
  int NumWaiting() const {
    std::lock_guard<std::mutex> guard(mu_);
    return waiting_;
  }
  // "U:<value>" or "D" per call for the held key, in the order they reached the real client.
  std::vector<std::string> Passed() const {
    std::lock_guard<std::mutex> guard(mu_);
    return passed_;
  }

  absl::StatusOr<bool> UpdateIfDifferent(const Context& ctx, std::string_view key,
                                         std::string_view value, bool lease) override {
    if (!Pass(ctx, key, "U:" + std::string(value))) return ctx.Err();
    return inner_->UpdateIfDifferent(ctx, key, value, lease);
  }
  absl::Status Delete(const Context& ctx, std::string_view key) override {
    if (!Pass(ctx, key, "D")) return ctx.Err();
    return inner_->Delete(ctx, key);
  }

 private:
  bool Pass(const Context& ctx, std::string_view key, std::string call) {
    std::unique_lock<std::mutex> lock(mu_);
    if (key != held_key_) return true;
    ++waiting_;
    const bool open = ctx.WaitOn(lock, cv_, [this] { return open_; });
    --waiting_;
    if (open) passed_.push_back(std::move(call));
    return open;
  }

  mutable std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  std::string held_key_;
  bool open_ = true;
  int waiting_ = 0;
  std::vector<std::string> passed_;
};

class SharedStoreTest : public ::testing::Test {
 protected:
  Configuration Config(std::shared_ptr<Backend> backend,
                       std::shared_ptr<Observer> observer = nullptr) {
    Configuration c;
    c.prefix = kPrefix;
    c.key_creator = NewTestKey;
    c.backend = std::move(backend);
    c.observer = std::move(observer);
    c.synchronization_interval = kSyncInterval;  // moves only with clock_
    c.clock = clock_;
    return c;
  }

  std::unique_ptr<SharedStore> MustJoin(Configuration c) {
    absl::StatusOr<std::unique_ptr<SharedStore>> store = SharedStore::Join(std::move(c));
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::optional<std::string> Get(const std::string& path) {
    absl::StatusOr<std::optional<std::string>> value = writer_->Get(Context(), path);
    EXPECT_TRUE(value.ok()) << value.status();
    return value.ok() ? *value : std::nullopt;
  }

  std::optional<Value> Lookup(const std::string& path) {
    absl::StatusOr<KeyValuePairs> pairs = writer_->ListPrefix(Context(), path);
    EXPECT_TRUE(pairs.ok()) << pairs.status();
    if (!pairs.ok()) return std::nullopt;
    auto it = pairs->find(path);
    if (it == pairs->end()) return std::nullopt;
    return it->second;
  }

  static constexpr std::chrono::hours kSyncInterval{1};

  // Every timer of the stores: time passes only where a test advances it.
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::shared_ptr<memory::InMemoryStore> server_ = memory::InMemoryStore::Create();
  // A client standing for "someone else": writes and deletes behind the stores' backs.
  std::shared_ptr<Backend> writer_ = server_->NewClient("writer");
};

TEST_F(SharedStoreTest, JoinRequiresPrefixAndKeyCreator) {
  Configuration no_prefix;
  no_prefix.key_creator = NewTestKey;
  absl::StatusOr<std::unique_ptr<SharedStore>> store = SharedStore::Join(no_prefix);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.status().message(), "prefix must be specified");

  Configuration no_creator;
  no_creator.prefix = kPrefix;
  store = JoinSharedStore(no_creator);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.status().message(), "KeyCreator must be specified");
}

TEST_F(SharedStoreTest, JoinUsesTheDefaultClientWithoutBackend) {
  Configuration c = Config(nullptr);
  c.prefix = "test/shared-store/default-client";
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("k", "v")).ok());
  absl::StatusOr<std::optional<std::string>> value =
      DefaultClient()->Get(Context(), "test/shared-store/default-client/k");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "v");
  store->Close(Context());
}

TEST_F(SharedStoreTest, JoinReturnsAfterTheInitialList) {
  ASSERT_TRUE(writer_->Update(Context(), PathOf("a"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("b"), "2", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), "cilium/state/shared/v1x/c", "3", false).ok());
  auto observer = std::make_shared<RecordingObserver>();

  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);

  // No waiting: the listed keys are applied before Join returns. "shared/v1x" is another store.
  EXPECT_EQ(store->NumEntries(), 2);
  EXPECT_THAT(observer->Events(), ElementsAre(Observed{'U', "a", "1"}, Observed{'U', "b", "2"}));
  std::map<std::string, std::shared_ptr<const Key>> keys = store->SharedKeysMap();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys.at("a")->GetKeyName(), "a");
  EXPECT_EQ(dynamic_cast<const TestKey&>(*keys.at("b")).value(), "2");
}

TEST_F(SharedStoreTest, KeyPathIsPrefixSlashName) {
  Configuration c = Config(server_->NewClient());
  c.prefix = std::string(kPrefix) + "/";
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("node1", "x")).ok());
  EXPECT_EQ(Get(PathOf("node1")), "x");
  EXPECT_TRUE(Eventually([&] { return store->NumEntries() == 1; }));
  EXPECT_EQ(store->SharedKeysMap().count("node1"), 1u);
}

TEST_F(SharedStoreTest, CollaboratorsConvergeToTheUnionOfTheirKeys) {
  std::unique_ptr<SharedStore> one = MustJoin(Config(server_->NewClient("one")));
  std::unique_ptr<SharedStore> two = MustJoin(Config(server_->NewClient("two")));
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);

  ASSERT_TRUE(one->UpdateLocalKeySync(Context(), TestKey("one-a", "1")).ok());
  ASSERT_TRUE(one->UpdateLocalKeySync(Context(), TestKey("one-b", "1")).ok());
  ASSERT_TRUE(two->UpdateLocalKeySync(Context(), TestKey("two-a", "2")).ok());
  ASSERT_TRUE(two->UpdateLocalKeySync(Context(), TestKey("two-b", "2")).ok());

  auto names = [](const SharedStore& store) {
    std::vector<std::string> out;
    for (const auto& [name, key] : store.SharedKeysMap()) out.push_back(name);
    return out;
  };
  const std::vector<std::string> all = {"one-a", "one-b", "two-a", "two-b"};
  EXPECT_TRUE(Eventually([&] { return names(*one) == all && names(*two) == all; }));
  EXPECT_EQ(one->NumEntries(), 4);
  EXPECT_EQ(two->NumEntries(), 4);
  one->Close(Context());
  two->Close(Context());
}

TEST_F(SharedStoreTest, LocalKeyDeletedByOthersIsRecreated) {
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("mine", "v")).ok());
  ASSERT_TRUE(Eventually([&] { return observer->Count('U', "mine") == 1; }));

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("mine")).ok());

  // The store writes it back and sees it again; a local key is never reported deleted.
  EXPECT_TRUE(Eventually([&] { return observer->Count('U', "mine") == 2; }));
  EXPECT_EQ(Get(PathOf("mine")), "v");
  EXPECT_EQ(observer->Count('D', "mine"), 0);
}

TEST_F(SharedStoreTest, PeriodicSyncRestoresAModifiedLocalKey) {
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient()));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("mine", "good")).ok());

  // A modification is not a delete: only the periodic sync can undo it, and the clock has not
  // moved yet.
  ASSERT_TRUE(writer_->Update(Context(), PathOf("mine"), "overwritten", false).ok());
  EXPECT_EQ(Get(PathOf("mine")), "overwritten");

  // The first round is due one interval after Join.
  clock_->Advance(kSyncInterval);
  EXPECT_TRUE(Eventually([&] { return Get(PathOf("mine")) == "good"; }));
  std::optional<Value> value = Lookup(PathOf("mine"));
  ASSERT_TRUE(value.has_value());
  EXPECT_NE(value->lease_id, 0);

  // And every interval after it (the next one counts from when that round ended, which the test
  // cannot see: it advances one interval at a time until the key is back).
  ASSERT_TRUE(writer_->Update(Context(), PathOf("mine"), "overwritten again", false).ok());
  EXPECT_TRUE(Eventually([&] {
    clock_->Advance(kSyncInterval);
    return Get(PathOf("mine")) == "good";
  }));
}

TEST_F(SharedStoreTest, KeysLostWithAnExpiredSessionAreRecreatedOnTheNewLease) {
  std::shared_ptr<Backend> client = server_->NewClient("agent");
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(client, observer));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("node", "v")).ok());
  std::optional<Value> before = Lookup(PathOf("node"));
  ASSERT_TRUE(before.has_value());
  ASSERT_NE(before->lease_id, 0);

  server_->ExpireSession(*client);

  EXPECT_TRUE(Eventually([&] {
    std::optional<Value> after = Lookup(PathOf("node"));
    return after.has_value() && after->data == "v" && after->lease_id != 0 &&
           after->lease_id != before->lease_id;
  }));
  EXPECT_EQ(observer->Count('D', "node"), 0);
}

TEST_F(SharedStoreTest, PeriodicSyncRecreatesKeysLostWithAnExpiredSession) {
  std::shared_ptr<Backend> client = server_->NewClient("agent");
  std::unique_ptr<SharedStore> store =
      MustJoin(Config(std::make_shared<DeleteBlindBackend>(client)));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("node", "v")).ok());
  std::optional<Value> before = Lookup(PathOf("node"));
  ASSERT_TRUE(before.has_value());

  server_->ExpireSession(*client);
  EXPECT_EQ(Lookup(PathOf("node")), std::nullopt);
  clock_->Advance(kSyncInterval);

  EXPECT_TRUE(Eventually([&] {
    std::optional<Value> after = Lookup(PathOf("node"));
    return after.has_value() && after->data == "v" && after->lease_id != 0 &&
           after->lease_id != before->lease_id;
  }));
}

TEST_F(SharedStoreTest, DeleteOfASharedKeyIsReportedAfterTheDelay) {
  ASSERT_TRUE(writer_->Update(Context(), PathOf("k"), "v", false).ok());
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = 100ms;
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(store->NumEntries(), 1);

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("k")).ok());
  // Handled (gone from the map) but not reported: on the store's clock no time has passed.
  ASSERT_TRUE(Eventually([&] { return store->NumEntries() == 0; }));
  clock_->Advance(99ms);
  // Events still flow meanwhile; the delete is not due.
  ASSERT_TRUE(writer_->Update(Context(), PathOf("marker"), "m", false).ok());
  ASSERT_TRUE(Eventually([&] { return observer->Count('U', "marker") == 1; }));
  EXPECT_EQ(observer->Count('D', "k"), 0);

  clock_->Advance(1ms);
  EXPECT_TRUE(Eventually([&] { return observer->Count('D', "k") == 1; }));
  // The delete carries the key's last value.
  EXPECT_THAT(observer->Events(), ElementsAre(Observed{'U', "k", "v"}, Observed{'U', "marker", "m"},
                                              Observed{'D', "k", "v"}));
}

TEST_F(SharedStoreTest, DeleteIsRemovedFromTheMapAtOnceButReportedOnlyAfterTheDelay) {
  ASSERT_TRUE(writer_->Update(Context(), PathOf("k"), "v", false).ok());
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = std::chrono::hours(1);
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("k")).ok());
  EXPECT_TRUE(Eventually([&] { return store->NumEntries() == 0; }));
  store->Release();
  // Pending deletes die with the store.
  EXPECT_EQ(observer->Count('D', "k"), 0);
}

TEST_F(SharedStoreTest, DeleteDelaySuppressesADeleteFollowedByARecreate) {
  ASSERT_TRUE(writer_->Update(Context(), PathOf("flappy"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("marker"), "m", false).ok());
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = 1s;
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("flappy")).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("flappy"), "2", false).ok());
  ASSERT_TRUE(Eventually([&] { return observer->Saw({'U', "flappy", "2"}); }));
  // Deletes are delivered in the order they fall due: once the later one is reported, the
  // suppressed one would have been reported before it.
  ASSERT_TRUE(writer_->Delete(Context(), PathOf("marker")).ok());
  ASSERT_TRUE(Eventually([&] { return store->NumEntries() == 1; }));
  clock_->Advance(1s);
  ASSERT_TRUE(Eventually([&] { return observer->Count('D', "marker") == 1; }));

  EXPECT_EQ(observer->Count('D', "flappy"), 0);
  EXPECT_EQ(store->NumEntries(), 1);
}

TEST_F(SharedStoreTest, CloseDeletesLocalKeysAndOthersSeeThemGo) {
  auto owner_observer = std::make_shared<RecordingObserver>();
  auto peer_observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> owner = MustJoin(Config(server_->NewClient(), owner_observer));
  std::unique_ptr<SharedStore> peer = MustJoin(Config(server_->NewClient(), peer_observer));
  ASSERT_NE(owner, nullptr);
  ASSERT_NE(peer, nullptr);
  ASSERT_TRUE(owner->UpdateLocalKeySync(Context(), TestKey("a", "1")).ok());
  ASSERT_TRUE(owner->UpdateLocalKeySync(Context(), TestKey("b", "2")).ok());
  ASSERT_TRUE(Eventually([&] { return peer->NumEntries() == 2; }));

  owner->Close(Context());

  EXPECT_EQ(Get(PathOf("a")), std::nullopt);
  EXPECT_EQ(Get(PathOf("b")), std::nullopt);
  EXPECT_EQ(owner_observer->Count('D', "a"), 1);
  EXPECT_EQ(owner_observer->Count('D', "b"), 1);
  EXPECT_TRUE(Eventually(
      [&] { return peer_observer->Count('D', "a") == 1 && peer_observer->Count('D', "b") == 1; }));
  EXPECT_EQ(peer->NumEntries(), 0);

  // Idempotent: nothing left to delete or report.
  owner->Close(Context());
  owner->Release();
  EXPECT_EQ(owner_observer->Count('D', "a"), 1);
}

TEST_F(SharedStoreTest, ReleaseLeavesKeysInTheBackend) {
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("a", "1")).ok());

  store->Release();
  store->Release();

  EXPECT_EQ(Get(PathOf("a")), "1");
  EXPECT_EQ(observer->Count('D', "a"), 0);
}

TEST_F(SharedStoreTest, DestructorReleases) {
  {
    std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient()));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("a", "1")).ok());
  }
  EXPECT_EQ(Get(PathOf("a")), "1");
}

TEST_F(SharedStoreTest, DeleteLocalKeyForgetsDeletesAndReports) {
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("a", "1")).ok());
  ASSERT_TRUE(Eventually([&] { return observer->Count('U', "a") == 1; }));

  store->DeleteLocalKey(Context(), TestKey("a", "1"));

  EXPECT_GE(observer->Count('D', "a"), 1);  // reported by DeleteLocalKey itself, synchronously
  EXPECT_EQ(Get(PathOf("a")), std::nullopt);
  // The watch reports it too, as a shared key: proof that it is no longer protected.
  EXPECT_TRUE(Eventually([&] { return observer->Count('D', "a") == 2; }));
  EXPECT_EQ(Get(PathOf("a")), std::nullopt);
  EXPECT_EQ(store->NumEntries(), 0);
}

TEST_F(SharedStoreTest, DeleteLocalKeyOfAKeyNotLocalOnlyDeletes) {
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = std::chrono::hours(1);  // the watch's report never comes
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(writer_->Update(Context(), PathOf("foreign"), "f", false).ok());
  ASSERT_TRUE(Eventually([&] { return observer->Count('U', "foreign") == 1; }));

  store->DeleteLocalKey(Context(), TestKey("foreign", ""));

  EXPECT_EQ(observer->Count('D', "foreign"), 0);
  EXPECT_EQ(Get(PathOf("foreign")), std::nullopt);
  EXPECT_TRUE(Eventually([&] { return store->NumEntries() == 0; }));
}

TEST_F(SharedStoreTest, UpdateKeySyncIsNotRemembered) {
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = std::chrono::hours(1);  // the watch's reports never come
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateKeySync(Context(), TestKey("plain", "p"), false).ok());
  ASSERT_TRUE(store->UpdateKeySync(Context(), TestKey("leased", "l"), true).ok());
  std::optional<Value> plain = Lookup(PathOf("plain"));
  std::optional<Value> leased = Lookup(PathOf("leased"));
  ASSERT_TRUE(plain.has_value());
  ASSERT_TRUE(leased.has_value());
  EXPECT_EQ(plain->lease_id, 0);
  EXPECT_NE(leased->lease_id, 0);
  ASSERT_TRUE(Eventually([&] { return store->NumEntries() == 2; }));

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("plain")).ok());

  // Dropped from the map like any shared key (a local key would stay and be written back).
  EXPECT_TRUE(Eventually([&] { return store->SharedKeysMap().count("plain") == 0; }));
  EXPECT_EQ(Get(PathOf("plain")), std::nullopt);
  // DeleteLocalKey and Close report local keys only.
  store->DeleteLocalKey(Context(), TestKey("leased", "l"));
  store->Close(Context());
  EXPECT_EQ(observer->Count('D', "leased"), 0);
  EXPECT_EQ(Get(PathOf("leased")), std::nullopt);
}

TEST_F(SharedStoreTest, FailedUpdateLocalKeySyncIsNotRemembered) {
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);

  absl::Status status = store->UpdateLocalKeySync(Context(), TestKey("broken", "b", true));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(Get(PathOf("broken")), std::nullopt);
  store->DeleteLocalKey(Context(), TestKey("broken", "b"));
  EXPECT_EQ(observer->Count('D', "broken"), 0);
}

TEST_F(SharedStoreTest, ObserverSeesEventsOneAtATimeInStreamOrder) {
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Update(Context(), PathOf("a"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("a"), "2", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("b"), "1", false).ok());
  ASSERT_TRUE(writer_->Delete(Context(), PathOf("a")).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("b"), "2", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("c"), "1", false).ok());

  ASSERT_TRUE(Eventually([&] { return observer->Events().size() == 6; }));
  EXPECT_THAT(observer->Events(), ElementsAre(Observed{'U', "a", "1"}, Observed{'U', "a", "2"},
                                              Observed{'U', "b", "1"}, Observed{'D', "a", "2"},
                                              Observed{'U', "b", "2"}, Observed{'U', "c", "1"}));
  EXPECT_FALSE(observer->Overlapped());
}

// An observer that throws for the keys named "throw-..." and records the others.
class ThrowingObserver : public RecordingObserver {
 public:
  void OnUpdate(const Key& key) override {
    if (key.GetKeyName().starts_with("throw-")) throw std::runtime_error("observer refused");
    RecordingObserver::OnUpdate(key);
  }
  void OnDelete(const NamedKey& key) override {
    if (key.GetKeyName().starts_with("throw-")) throw 7;  // not a std::exception
    RecordingObserver::OnDelete(key);
  }
};

// An observer that throws runs on a thread of the store's own: the exception is caught there and
// counted, and the store goes on delivering the events after it (before, the callback pool's
// thread caught it, and the store's watch task stayed suspended for good: no later event was
// delivered).
TEST_F(SharedStoreTest, ObserverThatThrowsIsCaughtAndTheStoreGoesOn) {
  auto observer = std::make_shared<ThrowingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = 0ms;  // the delete is reported at once
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  const uint64_t caught = kvstore::internal::CaughtExceptions();

  ASSERT_TRUE(writer_->Update(Context(), PathOf("throw-a"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("b"), "1", false).ok());
  ASSERT_TRUE(writer_->Delete(Context(), PathOf("throw-a")).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("c"), "1", false).ok());

  EXPECT_TRUE(Eventually([&] { return observer->Count('U', "c") == 1; }));
  EXPECT_THAT(observer->Events(), ElementsAre(Observed{'U', "b", "1"}, Observed{'U', "c", "1"}));
  EXPECT_TRUE(Eventually([&] { return kvstore::internal::CaughtExceptions() >= caught + 2; }));
  EXPECT_EQ(store->NumEntries(), 2);
  store->Close(Context());
}

// An observer that blocks in OnUpdate until released, counting the calls that began.
class BlockingObserver : public Observer {
 public:
  void OnUpdate(const Key&) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++calls_;
    cv_.wait(lock, [this] { return released_; });
  }
  void OnDelete(const NamedKey&) override {}
  void Release() {
    std::lock_guard<std::mutex> guard(mu_);
    released_ = true;
    cv_.notify_all();
  }
  int Calls() const {
    std::lock_guard<std::mutex> guard(mu_);
    return calls_;
  }

 private:
  mutable std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  bool released_ = false;
  int calls_ = 0;
};

// Stores share the library's threads, yet an observer that blocks delays only its own store:
// more stores than the blocking pool's usual threads have a blocked observer, and another store
// still delivers.
TEST_F(SharedStoreTest, ObserversThatBlockDelayNoOtherStore) {
  const size_t blocked_stores = kvstore::internal::CallbackPoolThreads() + 2;
  std::vector<std::shared_ptr<BlockingObserver>> blocking;
  std::vector<std::unique_ptr<SharedStore>> stores;
  for (size_t i = 0; i < blocked_stores; ++i) {
    blocking.push_back(std::make_shared<BlockingObserver>());
    stores.push_back(MustJoin(Config(server_->NewClient(), blocking.back())));
    ASSERT_NE(stores.back(), nullptr);
  }
  auto free = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> other = MustJoin(Config(server_->NewClient(), free));
  ASSERT_NE(other, nullptr);

  ASSERT_TRUE(writer_->Update(Context(), PathOf("first"), "1", false).ok());
  ASSERT_TRUE(Eventually([&] {
    for (const auto& observer : blocking) {
      if (observer->Calls() != 1) return false;
    }
    return true;
  }));
  ASSERT_TRUE(writer_->Update(Context(), PathOf("second"), "1", false).ok());
  EXPECT_TRUE(Eventually([&] { return free->Count('U', "second") == 1; }));

  // Released, the blocked stores deliver what they held back, in order.
  for (const auto& observer : blocking) observer->Release();
  EXPECT_TRUE(Eventually([&] {
    for (const auto& observer : blocking) {
      if (observer->Calls() != 2) return false;
    }
    return true;
  }));
}

// An observer may stop its own store from inside a callback; the store's owner destroys it later.
TEST_F(SharedStoreTest, ObserverMayReleaseItsStore) {
  class Releasing : public Observer {
   public:
    void OnUpdate(const Key& key) override {
      if (key.GetKeyName() == "stop") store.load()->Release();
      ++updates;
    }
    void OnDelete(const NamedKey&) override {}
    std::atomic<SharedStore*> store = nullptr;
    std::atomic<int> updates = 0;
  };
  auto observer = std::make_shared<Releasing>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);
  observer->store = store.get();
  ASSERT_TRUE(writer_->Update(Context(), PathOf("stop"), "1", false).ok());
  ASSERT_TRUE(Eventually([&] { return observer->updates == 1; }));
  // Stopped: later events reach no one.
  ASSERT_TRUE(writer_->Update(Context(), PathOf("later"), "1", false).ok());
  store.reset();
  EXPECT_EQ(observer->updates, 1);
}

// Stores cost no thread of their own: many stores run on the library's threads.
TEST_F(SharedStoreTest, StoresRunOnAFixedNumberOfThreads) {
  auto threads_now = [] {
    std::error_code error;
    std::filesystem::directory_iterator it("/proc/self/task", error);
    return error ? 0 : std::distance(it, std::filesystem::directory_iterator());
  };
  // The executor's threads start with the first store.
  std::unique_ptr<SharedStore> first = MustJoin(Config(server_->NewClient()));
  ASSERT_NE(first, nullptr);
  const auto before = threads_now();
  constexpr int kStores = 50;
  std::vector<std::unique_ptr<SharedStore>> stores;
  for (int i = 0; i < kStores; ++i) {
    stores.push_back(MustJoin(Config(server_->NewClient(), std::make_shared<RecordingObserver>())));
    ASSERT_NE(stores.back(), nullptr);
  }
  ASSERT_TRUE(writer_->Update(Context(), PathOf("k"), "1", false).ok());
  ASSERT_TRUE(Eventually([&] {
    for (const auto& store : stores) {
      if (store->NumEntries() != 1) return false;
    }
    return true;
  }));
  // At most the blocking pool's threads came on top (it runs the observers).
  EXPECT_LE(threads_now() - before,
            static_cast<decltype(threads_now())>(kvstore::internal::CallbackPoolThreads() + 1));
}

// No lock is held across a backend call: while the write of one key hangs, other keys are
// written and deleted, the watch delivers, and the store answers.
TEST_F(SharedStoreTest, SlowWriteOfOneKeyBlocksNeitherOtherKeysNorTheWatch) {
  auto backend = std::make_shared<GatedBackend>(server_->NewClient());
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(backend, observer));
  ASSERT_NE(store, nullptr);
  backend->Hold(PathOf("slow"));

  std::future<absl::Status> slow;
  std::future<void> others;
  // Declared after the futures: on a failure the gate opens before they are waited for.
  struct OpenAtEnd {
    GatedBackend* backend;
    ~OpenAtEnd() { backend->Open(); }
  } open_at_end{backend.get()};

  slow = std::async(std::launch::async,
                    [&] { return store->UpdateLocalKeySync(Context(), TestKey("slow", "1")); });
  ASSERT_TRUE(Eventually([&] { return backend->NumWaiting() == 1; }));

  others = std::async(std::launch::async, [&] {
    EXPECT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("fast", "2")).ok());
    EXPECT_TRUE(store->UpdateKeySync(Context(), TestKey("plain", "3"), false).ok());
    store->DeleteLocalKey(Context(), TestKey("fast", "2"));
  });
  EXPECT_TRUE(Eventually([&] { return others.wait_for(0s) == std::future_status::ready; }));
  ASSERT_TRUE(writer_->Update(Context(), PathOf("foreign"), "f", false).ok());
  EXPECT_TRUE(Eventually([&] {
    return observer->Count('U', "foreign") == 1 && observer->Count('U', "plain") == 1 &&
           observer->Count('D', "fast") == 2 && store->NumEntries() == 2;
  }));
  EXPECT_EQ(Get(PathOf("fast")), std::nullopt);
  EXPECT_EQ(slow.wait_for(0s), std::future_status::timeout);  // still held

  backend->Open();
  ASSERT_TRUE(Eventually([&] { return slow.wait_for(0s) == std::future_status::ready; }));
  EXPECT_TRUE(slow.get().ok());
  EXPECT_EQ(Get(PathOf("slow")), "1");
  EXPECT_TRUE(Eventually([&] { return observer->Count('U', "slow") == 1; }));
}

// Calls for one key still reach the backend one at a time, in the order they were made.
TEST_F(SharedStoreTest, WritesAndDeletesOfOneKeyStayInOrder) {
  auto backend = std::make_shared<GatedBackend>(server_->NewClient());
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(backend, observer));
  ASSERT_NE(store, nullptr);
  backend->Hold(PathOf("k"));

  std::future<absl::Status> written;
  std::future<void> deleted;
  struct OpenAtEnd {
    GatedBackend* backend;
    ~OpenAtEnd() { backend->Open(); }
  } open_at_end{backend.get()};

  written = std::async(std::launch::async,
                       [&] { return store->UpdateLocalKeySync(Context(), TestKey("k", "1")); });
  ASSERT_TRUE(Eventually([&] { return backend->NumWaiting() == 1; }));
  deleted =
      std::async(std::launch::async, [&] { store->DeleteLocalKey(Context(), TestKey("k", "1")); });
  // The delete waits for its turn, not at the backend.
  EXPECT_EQ(backend->NumWaiting(), 1);

  backend->Open();
  ASSERT_TRUE(Eventually([&] {
    return written.wait_for(0s) == std::future_status::ready &&
           deleted.wait_for(0s) == std::future_status::ready;
  }));
  EXPECT_TRUE(written.get().ok());
  EXPECT_THAT(backend->Passed(), ElementsAre("U:1", "D"));
  EXPECT_EQ(Get(PathOf("k")), std::nullopt);
  // It was local when deleted: reported by DeleteLocalKey (and by the watch).
  EXPECT_GE(observer->Count('D', "k"), 1);
}

TEST_F(SharedStoreTest, ValuesThatFailToUnmarshalAreSkipped) {
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Update(Context(), PathOf("good"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("bad"), "invalid", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("good"), "invalid too", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("last"), "2", false).ok());

  ASSERT_TRUE(Eventually([&] { return observer->Count('U', "last") == 1; }));
  EXPECT_THAT(observer->Events(),
              ElementsAre(Observed{'U', "good", "1"}, Observed{'U', "last", "2"}));
  std::map<std::string, std::shared_ptr<const Key>> keys = store->SharedKeysMap();
  ASSERT_EQ(keys.size(), 2u);
  // A bad modification keeps the last good value.
  EXPECT_EQ(dynamic_cast<const TestKey&>(*keys.at("good")).value(), "1");
}

TEST_F(SharedStoreTest, JoinFailsWhenTheContextDeadlinePassesBeforeTheList) {
  Configuration c = Config(std::make_shared<NeverListingBackend>());
  std::tie(c.context, std::ignore) = WithTimeout(Context(), 50ms);
  absl::StatusOr<std::unique_ptr<SharedStore>> store = SharedStore::Join(c);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SharedStoreTest, JoinTimesOutOnTheStoreClock) {
  Configuration c = Config(std::make_shared<NeverListingBackend>());
  std::future<absl::Status> joined =
      std::async(std::launch::async, [c] { return SharedStore::Join(c).status(); });
  // Join sleeps on the clock (the sync task waits on a timer of it): Join has taken its deadline.
  ASSERT_TRUE(Eventually([&] { return clock_->NumWaiters() == 1; }));
  EXPECT_EQ(joined.wait_for(0s), std::future_status::timeout);

  clock_->Advance(kJoinListTimeout);
  ASSERT_TRUE(Eventually([&] { return joined.wait_for(0s) == std::future_status::ready; }));
  EXPECT_EQ(joined.get().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SharedStoreTest, JoinFailsWhenTheContextIsCancelledBeforeTheList) {
  auto [ctx, cancel] = WithCancel(Context());
  Configuration c = Config(std::make_shared<NeverListingBackend>());
  c.context = ctx;
  // Whether the cancel lands before or during the wait for the list, Join reports it.
  std::thread canceller([cancel = cancel] {
    std::this_thread::sleep_for(20ms);
    cancel();
  });
  absl::StatusOr<std::unique_ptr<SharedStore>> store = SharedStore::Join(c);
  canceller.join();
  EXPECT_EQ(store.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(SharedStoreTest, JoinWithAnAlreadyCancelledContextFails) {
  auto [ctx, cancel] = WithCancel(Context());
  cancel();
  Configuration c = Config(server_->NewClient());
  c.context = ctx;
  absl::StatusOr<std::unique_ptr<SharedStore>> store = SharedStore::Join(c);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(SharedStoreTest, JoinFailsWhenTheWatchEndsBeforeTheList) {
  Configuration c = Config(std::make_shared<NeverListingBackend>(/*close_at_once=*/true));
  absl::StatusOr<std::unique_ptr<SharedStore>> store = SharedStore::Join(c);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SharedStoreTest, StoreStopsWhenItsContextIsDone) {
  auto [ctx, cancel] = WithCancel(Context());
  Configuration c = Config(server_->NewClient());
  c.context = ctx;
  std::unique_ptr<SharedStore> store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  cancel();
  // The tasks end by themselves; Release only waits for them.
  store->Release();
  SUCCEED();
}

}  // namespace
}  // namespace kvstore::store

#include "kvstore/store/shared_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/blocking_pool.h"
#include "core/guarded.h"
#include "core/watcher_consumer.h"
#include "core/watcher_producer.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/executor.h"
#include "kvstore/memory/in_memory_store.h"
#include "tests/support/driven_shared_store.h"
#include "tests/support/eventually.h"
#include "tests/support/while_running.h"

namespace kvstore::store {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using namespace std::chrono_literals;

constexpr char kPrefix[] = "cilium/state/shared/v1";

using kvstore::testing::DrivenStore;
using kvstore::testing::Eventually;
using kvstore::testing::kEventuallyTimeout;
using kvstore::testing::WhileRunning;

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
  // Waits (in real time, bounded) until `n` events were recorded: for stores on real threads.
  bool WaitForEvents(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kEventuallyTimeout, [&] { return events_.size() >= n; });
  }

 private:
  void Record(char kind, std::string name, std::string value) {
    if (in_flight_.fetch_add(1) != 0) overlapped_ = true;
    {
      std::lock_guard<std::mutex> guard(mu_);
      events_.push_back({kind, std::move(name), std::move(value)});
      cv_.notify_all();
    }
    in_flight_.fetch_sub(1);
  }

  std::atomic<int> in_flight_{0};
  std::atomic<bool> overlapped_{false};
  mutable std::mutex mu_;       // guards events_
  std::condition_variable cv_;  // signals events_ growing
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
// periodic sync can bring it back. Without a thread: the inner watcher's events are passed on
// (deletes dropped) by whoever made them readable, the in-memory server's delivery task.
class DeleteBlindBackend : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override {
    std::shared_ptr<Watcher> from = inner_->ListAndWatch(ctx, prefix, capacity);
    auto to = std::make_shared<Watcher>(std::string(prefix), capacity);
    // `to` keeps `from` (through this hook) until it is stopped; Stop waits for `to` closed.
    internal::WatcherProducer(*to).SetStopHook([from, raw_to = to.get()] {
      from->Stop();
      raw_to->Close();
    });
    Pump(from, to);
    return to;
  }

 private:
  // Passes on what `from` has buffered, then waits (a hook, no thread) for more.
  static void Pump(const std::weak_ptr<Watcher>& weak_from, const std::weak_ptr<Watcher>& weak_to) {
    std::shared_ptr<Watcher> from = weak_from.lock();
    std::shared_ptr<Watcher> to = weak_to.lock();
    if (from == nullptr || to == nullptr) return;
    std::deque<KeyValueEvent> events;
    internal::WatcherConsumer::Take took = internal::WatcherConsumer(*from).TryTakeBatch(&events);
    for (KeyValueEvent& event : events) {
      if (event.type == EventType::kDelete) continue;
      // The tests' bursts fit the watcher's capacity.
      if (!internal::WatcherProducer(*to).TryEmit(event)) ADD_FAILURE() << "watcher full";
    }
    if (took == internal::WatcherConsumer::Take::kEnded) {
      to->Close();
      return;
    }
    internal::WatcherConsumer(*from).NotifyWhenReadable(
        [weak_from, weak_to] { Pump(weak_from, weak_to); });
  }
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
  // Waits (in real time, bounded) until `n` calls for the held key wait.
  bool WaitForWaiting(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kEventuallyTimeout, [&] { return waiting_ >= n; });
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
    cv_.notify_all();
    const bool open = ctx.WaitOn(lock, cv_, [this] { return open_; });
    --waiting_;
    if (open) passed_.push_back(std::move(call));
    return open;
  }

  mutable std::mutex mu_;       // guards the fields below
  std::condition_variable cv_;  // signals open_ and waiting_ changes
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

// A blocking call started on a second thread, for a test that acts while it waits: the test
// runs the executor's tasks itself (RunOne...), then Finish runs them until the call returned.
class BlockingCall {
 public:
  BlockingCall(ManualExecutor& executor, std::function<absl::Status()> call)
      : executor_(executor), caller_([this, call = std::move(call)] {
          status_ = call();
          returned_ = true;
          executor_.Post([] {});  // wakes Finish's wait
        }) {}
  ~BlockingCall() { (void)Finish(); }
  // Runs the executor until the call returned; returns what it returned.
  absl::Status Finish() {
    if (!caller_.joinable()) return status_;
    auto deadline = std::chrono::steady_clock::now() + kEventuallyTimeout;
    while (!returned_) {
      if (executor_.RunOneOrWait(deadline) || returned_) continue;
      ADD_FAILURE() << "the blocking call has not returned after " << kEventuallyTimeout.count()
                    << " s; waiting on";
      deadline = std::chrono::steady_clock::time_point::max();
    }
    caller_.join();
    return status_;
  }
  bool Returned() const { return returned_; }

 private:
  ManualExecutor& executor_;
  std::atomic<bool> returned_{false};
  absl::Status status_;
  std::thread caller_;
};

// The stores, their in-memory backend and its watches all on one ManualExecutor, every timer on
// the FakeClock: what a store does happens when the test runs the executor (RunUntilIdle), on
// the test's thread, observer calls included. No Eventually: each step is asserted exactly.
class DrivenSharedStoreTest : public SharedStoreTest {
 protected:
  DrivenSharedStoreTest() {
    memory::InMemoryOptions opts;
    opts.clock = clock_;
    opts.executor = executor_;
    server_ = memory::InMemoryStore::Create(opts);
    writer_ = server_->NewClient("writer");
  }

  Configuration Config(std::shared_ptr<Backend> backend,
                       std::shared_ptr<Observer> observer = nullptr) {
    Configuration c = SharedStoreTest::Config(std::move(backend), std::move(observer));
    c.executor = executor_;
    return c;
  }

  DrivenStore MustJoin(Configuration c) {
    absl::StatusOr<std::unique_ptr<SharedStore>> store =
        WhileRunning(*executor_, [&] { return SharedStore::Join(std::move(c)); });
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? DrivenStore(executor_.get(), std::move(*store)) : DrivenStore();
  }

  // Runs what the executor has queued (watch deliveries, the stores' tasks, observer calls).
  void Run() { executor_->RunUntilIdle(); }
  // Moves the clock, then runs what fell due.
  void Advance(Clock::duration d) {
    clock_->Advance(d);
    Run();
  }

  // Nothing is left queued (a task dropped with the executor would leak what it holds).
  void TearDown() override { Run(); }

  const std::shared_ptr<ManualExecutor> executor_ = std::make_shared<ManualExecutor>();
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

TEST_F(DrivenSharedStoreTest, KeyPathIsPrefixSlashName) {
  Configuration c = Config(server_->NewClient());
  c.prefix = std::string(kPrefix) + "/";
  DrivenStore store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("node1", "x")).ok());
  EXPECT_EQ(Get(PathOf("node1")), "x");
  EXPECT_EQ(store->NumEntries(), 0);  // the watch has not delivered yet
  Run();
  EXPECT_EQ(store->NumEntries(), 1);
  EXPECT_EQ(store->SharedKeysMap().count("node1"), 1u);
}

TEST_F(DrivenSharedStoreTest, CollaboratorsConvergeToTheUnionOfTheirKeys) {
  DrivenStore one = MustJoin(Config(server_->NewClient("one")));
  DrivenStore two = MustJoin(Config(server_->NewClient("two")));
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
  Run();
  const std::vector<std::string> all = {"one-a", "one-b", "two-a", "two-b"};
  EXPECT_EQ(names(*one.get()), all);
  EXPECT_EQ(names(*two.get()), all);
  EXPECT_EQ(one->NumEntries(), 4);
  EXPECT_EQ(two->NumEntries(), 4);
  one.Close(Context());
  Run();
  EXPECT_EQ(two->NumEntries(), 2);
  two.Close(Context());
}

TEST_F(DrivenSharedStoreTest, LocalKeyDeletedByOthersIsRecreated) {
  auto observer = std::make_shared<RecordingObserver>();
  DrivenStore store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("mine", "v")).ok());
  Run();
  ASSERT_EQ(observer->Count('U', "mine"), 1);

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("mine")).ok());
  EXPECT_EQ(Get(PathOf("mine")), std::nullopt);

  // The store writes it back (at once, not at the periodic sync: the clock does not move) and
  // sees it again; a local key is never reported deleted.
  Run();
  EXPECT_EQ(Get(PathOf("mine")), "v");
  EXPECT_EQ(observer->Count('U', "mine"), 2);
  EXPECT_EQ(observer->Count('D', "mine"), 0);
  EXPECT_EQ(store->NumEntries(), 1);
}

TEST_F(DrivenSharedStoreTest, PeriodicSyncRestoresAModifiedLocalKey) {
  DrivenStore store = MustJoin(Config(server_->NewClient()));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("mine", "good")).ok());

  // A modification is not a delete: only the periodic sync can undo it.
  ASSERT_TRUE(writer_->Update(Context(), PathOf("mine"), "overwritten", false).ok());
  Run();
  EXPECT_EQ(Get(PathOf("mine")), "overwritten");
  // Not before the first round, one interval after Join.
  Advance(kSyncInterval - 1ms);
  EXPECT_EQ(Get(PathOf("mine")), "overwritten");
  Advance(1ms);
  EXPECT_EQ(Get(PathOf("mine")), "good");
  std::optional<Value> value = Lookup(PathOf("mine"));
  ASSERT_TRUE(value.has_value());
  EXPECT_NE(value->lease_id, 0);

  // And every interval after it, counted from when that round ended (no time passed in it).
  ASSERT_TRUE(writer_->Update(Context(), PathOf("mine"), "overwritten again", false).ok());
  Advance(kSyncInterval - 1ms);
  EXPECT_EQ(Get(PathOf("mine")), "overwritten again");
  Advance(1ms);
  EXPECT_EQ(Get(PathOf("mine")), "good");
}

TEST_F(DrivenSharedStoreTest, KeysLostWithAnExpiredSessionAreRecreatedOnTheNewLease) {
  std::shared_ptr<Backend> client = server_->NewClient("agent");
  auto observer = std::make_shared<RecordingObserver>();
  DrivenStore store = MustJoin(Config(client, observer));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("node", "v")).ok());
  std::optional<Value> before = Lookup(PathOf("node"));
  ASSERT_TRUE(before.has_value());
  ASSERT_NE(before->lease_id, 0);

  server_->ExpireSession(*client);
  EXPECT_EQ(Lookup(PathOf("node")), std::nullopt);
  Run();

  std::optional<Value> after = Lookup(PathOf("node"));
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->data, "v");
  EXPECT_NE(after->lease_id, 0);
  EXPECT_NE(after->lease_id, before->lease_id);
  EXPECT_EQ(observer->Count('D', "node"), 0);
}

TEST_F(DrivenSharedStoreTest, PeriodicSyncRecreatesKeysLostWithAnExpiredSession) {
  std::shared_ptr<Backend> client = server_->NewClient("agent");
  auto observer = std::make_shared<RecordingObserver>();
  DrivenStore store = MustJoin(Config(std::make_shared<DeleteBlindBackend>(client), observer));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("node", "v")).ok());
  Run();
  ASSERT_EQ(observer->Count('U', "node"), 1);  // the blind watch passes the create on
  std::optional<Value> before = Lookup(PathOf("node"));
  ASSERT_TRUE(before.has_value());

  server_->ExpireSession(*client);
  Run();
  // The store did not notice: the key stays lost until the periodic sync.
  EXPECT_EQ(Lookup(PathOf("node")), std::nullopt);
  Advance(kSyncInterval - 1ms);
  EXPECT_EQ(Lookup(PathOf("node")), std::nullopt);
  Advance(1ms);

  std::optional<Value> after = Lookup(PathOf("node"));
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->data, "v");
  EXPECT_NE(after->lease_id, 0);
  EXPECT_NE(after->lease_id, before->lease_id);
}

TEST_F(DrivenSharedStoreTest, DeleteOfASharedKeyIsReportedAfterTheDelay) {
  ASSERT_TRUE(writer_->Update(Context(), PathOf("k"), "v", false).ok());
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = 100ms;
  DrivenStore store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(store->NumEntries(), 1);

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("k")).ok());
  Run();
  // Handled (gone from the map) but not reported: on the store's clock no time has passed.
  EXPECT_EQ(store->NumEntries(), 0);
  Advance(99ms);
  // Events still flow meanwhile; the delete is not due.
  ASSERT_TRUE(writer_->Update(Context(), PathOf("marker"), "m", false).ok());
  Run();
  EXPECT_EQ(observer->Count('U', "marker"), 1);
  EXPECT_EQ(observer->Count('D', "k"), 0);

  Advance(1ms);
  // The delete carries the key's last value.
  EXPECT_THAT(observer->Events(), ElementsAre(Observed{'U', "k", "v"}, Observed{'U', "marker", "m"},
                                              Observed{'D', "k", "v"}));
}

TEST_F(DrivenSharedStoreTest, DeleteIsRemovedFromTheMapAtOnceButReportedOnlyAfterTheDelay) {
  ASSERT_TRUE(writer_->Update(Context(), PathOf("k"), "v", false).ok());
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = std::chrono::hours(1);
  DrivenStore store = MustJoin(c);
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("k")).ok());
  Run();
  EXPECT_EQ(store->NumEntries(), 0);
  store.Release();
  // Pending deletes die with the store.
  Advance(std::chrono::hours(1));
  EXPECT_EQ(observer->Count('D', "k"), 0);
}

TEST_F(DrivenSharedStoreTest, DeleteDelaySuppressesADeleteFollowedByARecreate) {
  ASSERT_TRUE(writer_->Update(Context(), PathOf("flappy"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("marker"), "m", false).ok());
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = 1s;
  DrivenStore store = MustJoin(c);
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("flappy")).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("flappy"), "2", false).ok());
  Run();
  EXPECT_TRUE(observer->Saw({'U', "flappy", "2"}));
  ASSERT_TRUE(writer_->Delete(Context(), PathOf("marker")).ok());
  Run();
  EXPECT_EQ(store->NumEntries(), 1);
  Advance(1s);
  EXPECT_EQ(observer->Count('D', "marker"), 1);
  EXPECT_EQ(observer->Count('D', "flappy"), 0);
  EXPECT_EQ(store->NumEntries(), 1);
  EXPECT_THAT(observer->Events(),
              ElementsAre(Observed{'U', "flappy", "1"}, Observed{'U', "marker", "m"},
                          Observed{'U', "flappy", "2"}, Observed{'D', "marker", "m"}));
}

TEST_F(DrivenSharedStoreTest, CloseDeletesLocalKeysAndOthersSeeThemGo) {
  auto owner_observer = std::make_shared<RecordingObserver>();
  auto peer_observer = std::make_shared<RecordingObserver>();
  DrivenStore owner = MustJoin(Config(server_->NewClient(), owner_observer));
  DrivenStore peer = MustJoin(Config(server_->NewClient(), peer_observer));
  ASSERT_NE(owner, nullptr);
  ASSERT_NE(peer, nullptr);
  ASSERT_TRUE(owner->UpdateLocalKeySync(Context(), TestKey("a", "1")).ok());
  ASSERT_TRUE(owner->UpdateLocalKeySync(Context(), TestKey("b", "2")).ok());
  Run();
  ASSERT_EQ(peer->NumEntries(), 2);

  owner.Close(Context());

  EXPECT_EQ(Get(PathOf("a")), std::nullopt);
  EXPECT_EQ(Get(PathOf("b")), std::nullopt);
  EXPECT_EQ(owner_observer->Count('D', "a"), 1);
  EXPECT_EQ(owner_observer->Count('D', "b"), 1);
  Run();
  EXPECT_EQ(peer_observer->Count('D', "a"), 1);
  EXPECT_EQ(peer_observer->Count('D', "b"), 1);
  EXPECT_EQ(peer->NumEntries(), 0);

  // Idempotent: nothing left to delete or report.
  owner.Close(Context());
  owner.Release();
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

TEST_F(DrivenSharedStoreTest, DeleteLocalKeyForgetsDeletesAndReports) {
  auto observer = std::make_shared<RecordingObserver>();
  DrivenStore store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("a", "1")).ok());
  Run();
  ASSERT_EQ(observer->Count('U', "a"), 1);

  store->DeleteLocalKey(Context(), TestKey("a", "1"));

  // Reported by DeleteLocalKey itself, synchronously, the watch's report not delivered yet.
  EXPECT_EQ(observer->Count('D', "a"), 1);
  EXPECT_EQ(Get(PathOf("a")), std::nullopt);
  // The watch reports it too, as a shared key: proof that it is no longer protected.
  Run();
  EXPECT_EQ(observer->Count('D', "a"), 2);
  EXPECT_EQ(Get(PathOf("a")), std::nullopt);
  EXPECT_EQ(store->NumEntries(), 0);
}

TEST_F(DrivenSharedStoreTest, DeleteLocalKeyOfAKeyNotLocalOnlyDeletes) {
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = std::chrono::hours(1);  // the watch's report never comes
  DrivenStore store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(writer_->Update(Context(), PathOf("foreign"), "f", false).ok());
  Run();
  ASSERT_EQ(observer->Count('U', "foreign"), 1);

  store->DeleteLocalKey(Context(), TestKey("foreign", ""));

  EXPECT_EQ(observer->Count('D', "foreign"), 0);
  EXPECT_EQ(Get(PathOf("foreign")), std::nullopt);
  EXPECT_EQ(store->NumEntries(), 1);  // until the watch's delete was handled
  Run();
  EXPECT_EQ(store->NumEntries(), 0);
  EXPECT_EQ(observer->Count('D', "foreign"), 0);
}

TEST_F(DrivenSharedStoreTest, UpdateKeySyncIsNotRemembered) {
  auto observer = std::make_shared<RecordingObserver>();
  Configuration c = Config(server_->NewClient(), observer);
  c.shared_key_delete_delay = std::chrono::hours(1);  // the watch's reports never come
  DrivenStore store = MustJoin(c);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->UpdateKeySync(Context(), TestKey("plain", "p"), false).ok());
  ASSERT_TRUE(store->UpdateKeySync(Context(), TestKey("leased", "l"), true).ok());
  std::optional<Value> plain = Lookup(PathOf("plain"));
  std::optional<Value> leased = Lookup(PathOf("leased"));
  ASSERT_TRUE(plain.has_value());
  ASSERT_TRUE(leased.has_value());
  EXPECT_EQ(plain->lease_id, 0);
  EXPECT_NE(leased->lease_id, 0);
  Run();
  ASSERT_EQ(store->NumEntries(), 2);

  ASSERT_TRUE(writer_->Delete(Context(), PathOf("plain")).ok());
  Run();

  // Dropped from the map like any shared key (a local key would stay and be written back).
  EXPECT_EQ(store->SharedKeysMap().count("plain"), 0u);
  EXPECT_EQ(Get(PathOf("plain")), std::nullopt);
  // DeleteLocalKey and Close report local keys only.
  store->DeleteLocalKey(Context(), TestKey("leased", "l"));
  store.Close(Context());
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

TEST_F(DrivenSharedStoreTest, ObserverSeesEventsOneAtATimeInStreamOrder) {
  auto observer = std::make_shared<RecordingObserver>();
  DrivenStore store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Update(Context(), PathOf("a"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("a"), "2", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("b"), "1", false).ok());
  ASSERT_TRUE(writer_->Delete(Context(), PathOf("a")).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("b"), "2", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("c"), "1", false).ok());
  EXPECT_THAT(observer->Events(), IsEmpty());  // nothing before the executor runs

  Run();
  EXPECT_THAT(observer->Events(), ElementsAre(Observed{'U', "a", "1"}, Observed{'U', "a", "2"},
                                              Observed{'U', "b", "1"}, Observed{'D', "a", "2"},
                                              Observed{'U', "b", "2"}, Observed{'U', "c", "1"}));
  EXPECT_FALSE(observer->Overlapped());
}

// The same on the library's threads: the observer called from the callback pool, never two
// calls at once.
TEST_F(SharedStoreTest, ObserverOnTheLibrarysThreadsSeesEventsOneAtATimeInStreamOrder) {
  auto observer = std::make_shared<RecordingObserver>();
  std::unique_ptr<SharedStore> store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Update(Context(), PathOf("a"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("a"), "2", false).ok());
  ASSERT_TRUE(writer_->Delete(Context(), PathOf("a")).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("c"), "1", false).ok());

  ASSERT_TRUE(observer->WaitForEvents(4));
  EXPECT_THAT(observer->Events(), ElementsAre(Observed{'U', "a", "1"}, Observed{'U', "a", "2"},
                                              Observed{'D', "a", "2"}, Observed{'U', "c", "1"}));
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
TEST_F(DrivenSharedStoreTest, ObserverMayReleaseItsStore) {
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
  DrivenStore store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);
  observer->store = store.get();
  ASSERT_TRUE(writer_->Update(Context(), PathOf("stop"), "1", false).ok());
  Run();  // the observer releases the store from its callback, on this thread
  EXPECT_EQ(observer->updates, 1);
  // Stopped: later events reach no one.
  ASSERT_TRUE(writer_->Update(Context(), PathOf("later"), "1", false).ok());
  Run();
  store.Reset();
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
TEST_F(DrivenSharedStoreTest, SlowWriteOfOneKeyBlocksNeitherOtherKeysNorTheWatch) {
  auto backend = std::make_shared<GatedBackend>(server_->NewClient());
  auto observer = std::make_shared<RecordingObserver>();
  DrivenStore store = MustJoin(Config(backend, observer));
  ASSERT_NE(store, nullptr);
  backend->Hold(PathOf("slow"));

  std::future<absl::Status> slow;
  std::future<void> others;
  // Declared after the futures: on a failure the gate opens before they are waited for.
  struct OpenAtEnd {
    GatedBackend* backend;
    ~OpenAtEnd() { backend->Open(); }
  } open_at_end{backend.get()};

  // The callers' threads are the test's: the store's own work waits for this thread to run it.
  slow = std::async(std::launch::async,
                    [&] { return store->UpdateLocalKeySync(Context(), TestKey("slow", "1")); });
  ASSERT_TRUE(backend->WaitForWaiting(1));

  others = std::async(std::launch::async, [&] {
    EXPECT_TRUE(store->UpdateLocalKeySync(Context(), TestKey("fast", "2")).ok());
    EXPECT_TRUE(store->UpdateKeySync(Context(), TestKey("plain", "3"), false).ok());
    store->DeleteLocalKey(Context(), TestKey("fast", "2"));
  });
  ASSERT_EQ(others.wait_for(kEventuallyTimeout), std::future_status::ready);
  EXPECT_EQ(observer->Count('D', "fast"), 1);  // DeleteLocalKey's own report
  ASSERT_TRUE(writer_->Update(Context(), PathOf("foreign"), "f", false).ok());
  Run();  // the watch delivers while the slow write still hangs
  EXPECT_EQ(observer->Count('U', "foreign"), 1);
  EXPECT_EQ(observer->Count('U', "plain"), 1);
  EXPECT_EQ(observer->Count('D', "fast"), 2);
  EXPECT_EQ(store->NumEntries(), 2);
  EXPECT_EQ(Get(PathOf("fast")), std::nullopt);
  EXPECT_EQ(slow.wait_for(0s), std::future_status::timeout);  // still held

  backend->Open();
  ASSERT_EQ(slow.wait_for(kEventuallyTimeout), std::future_status::ready);
  EXPECT_TRUE(slow.get().ok());
  EXPECT_EQ(Get(PathOf("slow")), "1");
  Run();
  EXPECT_EQ(observer->Count('U', "slow"), 1);
}

// Calls for one key still reach the backend one at a time, in the order they were made.
TEST_F(DrivenSharedStoreTest, WritesAndDeletesOfOneKeyStayInOrder) {
  auto backend = std::make_shared<GatedBackend>(server_->NewClient());
  auto observer = std::make_shared<RecordingObserver>();
  DrivenStore store = MustJoin(Config(backend, observer));
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
  ASSERT_TRUE(backend->WaitForWaiting(1));
  deleted =
      std::async(std::launch::async, [&] { store->DeleteLocalKey(Context(), TestKey("k", "1")); });
  // The delete waits for its turn, not at the backend.
  EXPECT_EQ(deleted.wait_for(0s), std::future_status::timeout);
  EXPECT_EQ(backend->NumWaiting(), 1);

  backend->Open();
  ASSERT_EQ(written.wait_for(kEventuallyTimeout), std::future_status::ready);
  ASSERT_EQ(deleted.wait_for(kEventuallyTimeout), std::future_status::ready);
  EXPECT_TRUE(written.get().ok());
  EXPECT_THAT(backend->Passed(), ElementsAre("U:1", "D"));
  EXPECT_EQ(Get(PathOf("k")), std::nullopt);
  // It was local when deleted: reported by DeleteLocalKey, then by the watch.
  EXPECT_EQ(observer->Count('D', "k"), 1);
  Run();
  EXPECT_EQ(observer->Count('D', "k"), 2);
}

TEST_F(DrivenSharedStoreTest, ValuesThatFailToUnmarshalAreSkipped) {
  auto observer = std::make_shared<RecordingObserver>();
  DrivenStore store = MustJoin(Config(server_->NewClient(), observer));
  ASSERT_NE(store, nullptr);

  ASSERT_TRUE(writer_->Update(Context(), PathOf("good"), "1", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("bad"), "invalid", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("good"), "invalid too", false).ok());
  ASSERT_TRUE(writer_->Update(Context(), PathOf("last"), "2", false).ok());

  Run();
  EXPECT_THAT(observer->Events(),
              ElementsAre(Observed{'U', "good", "1"}, Observed{'U', "last", "2"}));
  std::map<std::string, std::shared_ptr<const Key>> keys = store->SharedKeysMap();
  ASSERT_EQ(keys.size(), 2u);
  // A bad modification keeps the last good value.
  EXPECT_EQ(dynamic_cast<const TestKey&>(*keys.at("good")).value(), "1");
}

TEST_F(DrivenSharedStoreTest, JoinFailsWhenTheContextDeadlinePassesBeforeTheList) {
  Configuration c = Config(std::make_shared<NeverListingBackend>());
  std::tie(c.context, std::ignore) = WithDeadline(Context(), clock_->Now() + 50ms, clock_);
  BlockingCall join(*executor_, [c] { return SharedStore::Join(c).status(); });
  // The store's first task comes once Join has started the store and waits for the list.
  ASSERT_TRUE(executor_->RunOneOrWait(std::chrono::steady_clock::now() + kEventuallyTimeout));
  Advance(49ms);
  EXPECT_FALSE(join.Returned());
  clock_->Advance(1ms);
  EXPECT_EQ(join.Finish().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(DrivenSharedStoreTest, JoinTimesOutOnTheStoreClock) {
  Configuration c = Config(std::make_shared<NeverListingBackend>());
  BlockingCall join(*executor_, [c] { return SharedStore::Join(c).status(); });
  // Join takes its deadline on the clock before it starts the store's tasks: once the first
  // task came, moving the clock moves it past that deadline.
  ASSERT_TRUE(executor_->RunOneOrWait(std::chrono::steady_clock::now() + kEventuallyTimeout));
  Advance(kJoinListTimeout - 1ms);
  EXPECT_FALSE(join.Returned());
  clock_->Advance(1ms);
  EXPECT_EQ(join.Finish().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(DrivenSharedStoreTest, JoinFailsWhenTheContextIsCancelledBeforeTheList) {
  auto [ctx, cancel] = WithCancel(Context());
  Configuration c = Config(std::make_shared<NeverListingBackend>());
  c.context = ctx;
  BlockingCall join(*executor_, [c] { return SharedStore::Join(c).status(); });
  // Cancelled once the store started (Join waits for the list, or is about to).
  ASSERT_TRUE(executor_->RunOneOrWait(std::chrono::steady_clock::now() + kEventuallyTimeout));
  Run();
  EXPECT_FALSE(join.Returned());
  cancel();
  EXPECT_EQ(join.Finish().code(), absl::StatusCode::kCancelled);
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

#include "kvstore/store/watch_store.h"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/task.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/executor.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "store/async_stores.h"
#include "tests/support/eventually.h"
#include "tests/support/fake_watch_store_backend.h"
#include "tests/support/metrics_reader.h"
#include "tests/support/recording_observer.h"
#include "tests/support/scripted_watch_store_backend.h"

namespace kvstore::store {
namespace {

using internal::AsyncWatchStore;
using ::kvstore::testing::Eventually;
using ::kvstore::testing::FakeWatchStoreBackend;
using ::kvstore::testing::ReadMetric;
using ::kvstore::testing::RecordingObserver;
using ::kvstore::testing::ScriptedWatchStoreBackend;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;
using Event = RecordingObserver::Event;

KeyValueEvent Create(std::string key, std::string value) {
  return KeyValueEvent{EventType::kCreate, std::move(key), std::move(value)};
}
KeyValueEvent Modify(std::string key, std::string value) {
  return KeyValueEvent{EventType::kModify, std::move(key), std::move(value)};
}
KeyValueEvent Remove(std::string key) {
  return KeyValueEvent{EventType::kDelete, std::move(key), ""};
}
KeyValueEvent ListDone() { return KeyValueEvent{EventType::kListDone, "", ""}; }

Event Updated(std::string key, std::string value) {
  return RecordingObserver::Update(std::move(key), std::move(value));
}
Event Deleted(std::string key, std::string value) {
  return RecordingObserver::Delete(std::move(key), std::move(value));
}

// Runs one Watch on a thread for the lifetime of this object; the destructor cancels it and
// waits for Watch to return. For the tests of the blocking call itself.
class WatchRun {
 public:
  WatchRun(WatchStore& store, WatchStoreBackend& backend, std::string prefix) {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    thread_ = std::thread([this, &store, &backend, prefix] {
      store.Watch(ctx_, backend, prefix);
      returned_ = true;
    });
  }
  ~WatchRun() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    cancel_();
    thread_.join();
  }
  bool Returned() const { return returned_; }

 private:
  Context ctx_;
  CancelFunc cancel_;
  std::atomic<bool> returned_{false};
  std::thread thread_;
};

// Runs one WatchAsync on the test's ManualExecutor for the lifetime of this object, without a
// thread: the test runs the executor's tasks (the observer's calls among them) on its own thread.
// The destructor cancels the watch and runs the executor until it returned.
class DrivenWatch {
 public:
  DrivenWatch(AsyncWatchStore& store, ManualExecutor& executor, WatchStoreBackend& backend,
              std::string prefix)
      : executor_(executor) {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    kvstore::internal::Spawn(executor, store.WatchAsync(executor, ctx_, backend, std::move(prefix)),
                             [returned = returned_] { *returned = true; });
    executor_.RunUntilIdle();
  }
  ~DrivenWatch() { Stop(); }
  void Stop() {
    cancel_();
    executor_.RunUntilIdle();
  }
  bool Returned() const { return *returned_; }
  const Context& ctx() const { return ctx_; }

 private:
  ManualExecutor& executor_;
  Context ctx_;
  CancelFunc cancel_;
  std::shared_ptr<bool> returned_ = std::make_shared<bool>(false);
};

class WatchStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<AsyncWatchStore> NewStore(RestartableWatchStoreOptions opts = {}) {
    return internal::NewAsyncRestartableWatchStore("qux", KVPairCreator, observer_,
                                                   std::move(opts));
  }
  bool WaitForEvents(size_t n) { return observer_->WaitForEvents(n); }
  // Runs what is queued on the executor; then exactly `n` events were recorded.
  void ExpectEventsAfterRun(size_t n) {
    executor_.RunUntilIdle();
    EXPECT_EQ(observer_->NumEvents(), n);
  }

  ManualExecutor executor_;
  std::shared_ptr<RecordingObserver> observer_ = std::make_shared<RecordingObserver>();
};

TEST_F(WatchStoreTest, PropagatesCreateModifyDeleteAndListDone) {
  auto store = NewStore();
  EXPECT_EQ(store->NumEntries(), 0u);
  EXPECT_FALSE(store->Synced());
  ScriptedWatchStoreBackend backend({Create("key1", "value1A"), Create("key2", "value2A")});
  {
    DrivenWatch run(*store, executor_, backend, "foo/bar");
    ExpectEventsAfterRun(2);
    EXPECT_FALSE(store->Synced());
    EXPECT_EQ(store->NumEntries(), 2u);
    ASSERT_TRUE(backend.Feed(ListDone()));
    EXPECT_FALSE(store->Synced());  // not before the executor ran the watch
    executor_.RunUntilIdle();
    EXPECT_TRUE(store->Synced());
    ASSERT_TRUE(backend.Feed(Modify("key2", "value2B")));
    ASSERT_TRUE(backend.Feed(Create("key3", "value3A")));
    ASSERT_TRUE(backend.Feed(Remove("key4")));  // unknown: no event
    ASSERT_TRUE(backend.Feed(Remove("key3")));
    ExpectEventsAfterRun(5);
    EXPECT_EQ(store->NumEntries(), 2u);
  }
  EXPECT_FALSE(store->Synced());
  EXPECT_THAT(observer_->Events(),
              ElementsAre(Updated("key1", "value1A"), Updated("key2", "value2A"),
                          Updated("key2", "value2B"), Updated("key3", "value3A"),
                          Deleted("key3", "value3A")));
  EXPECT_THAT(backend.Prefixes(), ElementsAre("foo/bar/"));
}

// The blocking Watch on a thread of its own, the observer called from it (SPEC's contract).
TEST_F(WatchStoreTest, BlockingWatchPropagatesEventsFromItsThread) {
  auto store = NewStore();
  FakeWatchStoreBackend backend({Create("key1", "value1A"), Create("key2", "value2A")});
  {
    WatchRun run(*store, backend, "foo/bar");
    ASSERT_TRUE(WaitForEvents(2));
    EXPECT_FALSE(store->Synced());
    EXPECT_EQ(store->NumEntries(), 2u);
    backend.Feed(ListDone());
    backend.Feed(Modify("key2", "value2B"));
    ASSERT_TRUE(WaitForEvents(3));
    EXPECT_TRUE(store->Synced());  // kListDone came before the modification
    backend.Feed(Remove("key1"));
    ASSERT_TRUE(WaitForEvents(4));
    EXPECT_EQ(store->NumEntries(), 1u);
  }
  EXPECT_FALSE(store->Synced());
  EXPECT_THAT(observer_->Events(),
              ElementsAre(Updated("key1", "value1A"), Updated("key2", "value2A"),
                          Updated("key2", "value2B"), Deleted("key1", "value1A")));
}

TEST_F(WatchStoreTest, SecondRunOnAnotherPrefixDeletesStaleKeys) {
  auto store = NewStore();
  {
    ScriptedWatchStoreBackend backend({Create("key1", "value1A"), Create("key2", "value2B"),
                                       Create("key3", "value3A"), ListDone()});
    DrivenWatch run(*store, executor_, backend, "foo/bar");
    ExpectEventsAfterRun(3);
    EXPECT_TRUE(store->Synced());
  }
  ScriptedWatchStoreBackend backend(
      {Create("key1", "value1C"), Create("key4", "value4A"), ListDone()});
  {
    DrivenWatch run(*store, executor_, backend, "foo/baz");
    EXPECT_TRUE(store->Synced());
    ExpectEventsAfterRun(7);
    ASSERT_TRUE(backend.Feed(Create("key2", "value2C")));
    ExpectEventsAfterRun(8);
    EXPECT_EQ(store->NumEntries(), 3u);
  }
  std::vector<Event> events = observer_->Events();
  ASSERT_EQ(events.size(), 8u);
  EXPECT_THAT(std::vector<Event>(events.begin() + 3, events.end()),
              ElementsAre(Updated("key1", "value1C"), Updated("key4", "value4A"),
                          Deleted("key2", "value2B"), Deleted("key3", "value3A"),
                          Updated("key2", "value2C")));
  EXPECT_THAT(backend.Prefixes(), ElementsAre("foo/baz/"));
}

TEST_F(WatchStoreTest, ModifyOfUnknownKeyActsAsCreate) {
  auto store = NewStore();
  ScriptedWatchStoreBackend backend({ListDone(), Modify("key3", "value3A")});
  DrivenWatch run(*store, executor_, backend, "foo/bar");
  ExpectEventsAfterRun(1);
  EXPECT_THAT(observer_->Events(), ElementsAre(Updated("key3", "value3A")));
  EXPECT_EQ(store->NumEntries(), 1u);
}

TEST_F(WatchStoreTest, DeleteOfUnknownKeyIsIgnored) {
  auto store = NewStore();
  ScriptedWatchStoreBackend backend({ListDone(), Remove("ghost"), Create("key1", "value1")});
  DrivenWatch run(*store, executor_, backend, "foo/bar");
  ExpectEventsAfterRun(1);
  EXPECT_THAT(observer_->Events(), ElementsAre(Updated("key1", "value1")));
}

TEST_F(WatchStoreTest, PassesPrefixWithExactlyOneTrailingSlash) {
  auto store = NewStore();
  FakeWatchStoreBackend backend({}, {.close_after_script = true});
  for (const char* prefix : {"foo/bar", "foo/bar/", "foo/bar//"}) {
    store->Watch(Context::Background(), backend, prefix);
  }
  EXPECT_THAT(backend.Prefixes(), ElementsAre("foo/bar/", "foo/bar/", "foo/bar/"));
}

TEST_F(WatchStoreTest, ReturnsWhenWatcherCloses) {
  auto store = NewStore();
  FakeWatchStoreBackend backend({Create("key1", "value1"), ListDone()},
                                {.close_after_script = true});
  store->Watch(Context::Background(), backend, "foo/bar");
  EXPECT_THAT(observer_->Events(), ElementsAre(Updated("key1", "value1")));
  EXPECT_FALSE(store->Synced());
}

TEST_F(WatchStoreTest, ReturnsWhenContextIsDone) {
  auto store = NewStore();
  ScriptedWatchStoreBackend backend({Create("key1", "value1")});
  DrivenWatch run(*store, executor_, backend, "foo/bar");
  ExpectEventsAfterRun(1);
  EXPECT_FALSE(run.Returned());
  EXPECT_EQ(backend.NumStopped(), 0u);
  run.Stop();
  EXPECT_TRUE(run.Returned());
  // The backend's side of the watch was told to end.
  EXPECT_EQ(backend.NumStopped(), 1u);
}

// The blocking Watch returns when its context is done, from its own thread.
TEST_F(WatchStoreTest, BlockingWatchReturnsWhenContextIsDone) {
  auto store = NewStore();
  FakeWatchStoreBackend backend({Create("key1", "value1")});
  WatchRun run(*store, backend, "foo/bar");
  ASSERT_TRUE(WaitForEvents(1));
  EXPECT_FALSE(run.Returned());
  run.Stop();
  EXPECT_TRUE(run.Returned());
  // The backend's producer was told to end.
  EXPECT_TRUE(Eventually([&] { return backend.NumClosed() == 1; }));
}

TEST_F(WatchStoreTest, SkipsValuesThatFailToUnmarshal) {
  // Accepts only values starting with "ok".
  class PickyKey final : public Key {
   public:
    std::string GetKeyName() const override { return pair_.key; }
    absl::StatusOr<std::string> Marshal() const override { return pair_.value; }
    absl::Status Unmarshal(std::string_view key, std::string_view data) override {
      if (!data.starts_with("ok")) return absl::InvalidArgumentError("not ok");
      return pair_.Unmarshal(key, data);
    }

   private:
    KVPair pair_;
  };
  auto store = internal::NewAsyncRestartableWatchStore(
      "qux", [] { return std::make_unique<PickyKey>(); }, observer_);
  ScriptedWatchStoreBackend backend({Create("key1", "bad"), Create("key2", "ok2"), ListDone(),
                                     Modify("key2", "broken"), Create("key3", "ok3")});
  DrivenWatch run(*store, executor_, backend, "foo/bar");
  ExpectEventsAfterRun(2);
  EXPECT_THAT(observer_->Events(), ElementsAre(Updated("key2", "ok2"), Updated("key3", "ok3")));
  EXPECT_EQ(store->NumEntries(), 2u);
}

TEST_F(WatchStoreTest, DrainDeletesEveryKnownKey) {
  auto store = NewStore();
  {
    ScriptedWatchStoreBackend backend({Create("key1", "value1A"), Create("key2", "value2A"),
                                       ListDone(), Modify("key3", "value3A"), Remove("key2")});
    DrivenWatch run(*store, executor_, backend, "foo/bar");
    ExpectEventsAfterRun(4);
  }
  store->Drain();
  std::vector<Event> events = observer_->Events();
  ASSERT_EQ(events.size(), 6u);
  EXPECT_THAT(std::vector<Event>(events.begin() + 4, events.end()),
              UnorderedElementsAre(Deleted("key1", "value1A"), Deleted("key3", "value3A")));
  EXPECT_EQ(store->NumEntries(), 0u);

  // The store can watch again, and be drained again.
  {
    ScriptedWatchStoreBackend backend({Create("key1", "value1A")});
    DrivenWatch run(*store, executor_, backend, "foo/bar");
    ExpectEventsAfterRun(7);
  }
  store->Drain();
  events = observer_->Events();
  ASSERT_EQ(events.size(), 8u);
  EXPECT_EQ(events[6], Updated("key1", "value1A"));
  EXPECT_EQ(events[7], Deleted("key1", "value1A"));
}

TEST_F(WatchStoreTest, OnSyncCallbacksRunOnceAcrossRuns) {
  auto callback = [this](std::string value) {
    return [this, value](const Context&) { observer_->OnUpdate(KVPair("callback", value)); };
  };
  RestartableWatchStoreOptions opts;
  opts.on_sync_callbacks = {callback("1"), callback("2")};
  auto store = NewStore(std::move(opts));

  {  // Closed before kListDone: no callbacks.
    FakeWatchStoreBackend backend({Create("key1", "value1A")}, {.close_after_script = true});
    store->Watch(Context::Background(), backend, "foo/bar");
  }
  {
    FakeWatchStoreBackend backend(
        {Create("key1", "value1A"), ListDone(), Create("key2", "value2A")},
        {.close_after_script = true});
    store->Watch(Context::Background(), backend, "foo/bar");
  }
  {
    FakeWatchStoreBackend backend(
        {Create("key1", "value1A"), ListDone(), Create("key3", "value3A")},
        {.close_after_script = true});
    store->Watch(Context::Background(), backend, "foo/bar");
  }
  EXPECT_THAT(observer_->Events(),
              ElementsAre(Updated("key1", "value1A"),                              // run 1
                          Updated("key1", "value1A"), Updated("callback", "1"),    // run 2
                          Updated("callback", "2"), Updated("key2", "value2A"),    //
                          Updated("key1", "value1A"), Deleted("key2", "value2A"),  // run 3
                          Updated("key3", "value3A")));
}

TEST_F(WatchStoreTest, ConcurrentWatchAndDrainThrow) {
  auto store = NewStore();
  ScriptedWatchStoreBackend backend({Create("key1", "value1")});
  DrivenWatch run(*store, executor_, backend, "foo/bar/");
  ExpectEventsAfterRun(1);
  EXPECT_THROW(store->Watch(run.ctx(), backend, "foo/bar/"), std::logic_error);
  EXPECT_THROW((void)store->WatchAsync(executor_, run.ctx(), backend, "foo/bar/"),
               std::logic_error);
  EXPECT_THROW(store->Drain(), std::logic_error);
  // The running Watch is unaffected.
  ASSERT_TRUE(backend.Feed(Create("key2", "value2")));
  ExpectEventsAfterRun(2);
  EXPECT_EQ(backend.Prefixes().size(), 1u);
}

TEST_F(WatchStoreTest, ReportsEntriesAndInitialSyncMetrics) {
  prometheus::Registry registry;
  auto metrics = std::make_shared<Metrics>(registry);
  prometheus::Gauge& entries =
      prometheus::BuildGauge().Name("test_elements_metric").Register(registry).Add({});
  auto synced = [&] {
    return ReadMetric(registry, "cilium_kvstore_initial_sync_completed",
                      {{"scope", "nodes/v1"}, {"source_cluster", "qux"}, {"action", "read"}});
  };
  RestartableWatchStoreOptions opts;
  opts.entries_metric = &entries;
  opts.metrics = metrics;
  auto store = NewStore(std::move(opts));
  EXPECT_EQ(entries.Value(), 0);

  {
    ScriptedWatchStoreBackend backend({Create("key1", "value1A"), Create("key2", "value2A")});
    DrivenWatch run(*store, executor_, backend, "cilium/state/nodes/v1");
    ExpectEventsAfterRun(2);
    EXPECT_EQ(synced(), 0);
    EXPECT_EQ(entries.Value(), 2);
    ASSERT_TRUE(backend.Feed(ListDone()));
    executor_.RunUntilIdle();
    EXPECT_EQ(synced(), 1);
    ASSERT_TRUE(backend.Feed(Remove("key1")));
    ASSERT_TRUE(backend.Feed(Create("key2", "value2B")));
    ASSERT_TRUE(backend.Feed(Create("key3", "value3A")));
    ExpectEventsAfterRun(5);
  }
  EXPECT_EQ(entries.Value(), 2);
  EXPECT_EQ(synced(), 0);

  {
    ScriptedWatchStoreBackend backend({Create("key3", "value3A")});
    DrivenWatch run(*store, executor_, backend, "cilium/state/nodes/v1");
    ExpectEventsAfterRun(6);
    EXPECT_EQ(synced(), 0);
    ASSERT_TRUE(backend.Feed(ListDone()));
    ExpectEventsAfterRun(7);  // key2 went stale
    EXPECT_EQ(synced(), 1);
    EXPECT_EQ(entries.Value(), 1);
  }
  EXPECT_EQ(synced(), 0);
}

// OnDelete gets the object the last OnUpdate got, not one made again from the stored value: a
// key whose value no longer unmarshals (here: the key type refuses everything from some point on)
// is still reported gone, as the object the observer knows.
TEST_F(WatchStoreTest, DeleteGetsTheUpdatedObjectEvenWhenItsValueNoLongerUnmarshals) {
  struct PickyKey final : Key {
    explicit PickyKey(const std::atomic<bool>* refuse) : refuse(refuse) {}
    std::string GetKeyName() const override { return name; }
    absl::StatusOr<std::string> Marshal() const override { return "picky:" + value; }
    absl::Status Unmarshal(std::string_view key, std::string_view data) override {
      if (refuse->load()) return absl::InvalidArgumentError("refused");
      name.assign(key);
      value.assign(data);
      return absl::OkStatus();
    }
    const std::atomic<bool>* refuse;
    std::string name, value;
  };
  std::atomic<bool> refuse{false};
  std::atomic<int> created{0};
  auto store = internal::NewAsyncRestartableWatchStore(
      "qux",
      [&]() -> std::unique_ptr<Key> {
        ++created;
        return std::make_unique<PickyKey>(&refuse);
      },
      observer_);
  ScriptedWatchStoreBackend backend({Create("a", "1"), Create("b", "2"), ListDone()});
  DrivenWatch run(*store, executor_, backend, "foo");
  ExpectEventsAfterRun(2);
  EXPECT_TRUE(store->Synced());
  ASSERT_TRUE(backend.Feed(Remove("a")));
  ExpectEventsAfterRun(3);
  refuse = true;
  ASSERT_TRUE(backend.Feed(Remove("b")));
  ExpectEventsAfterRun(4);
  EXPECT_EQ(created.load(), 2);  // one per update, none for the deletes
  EXPECT_THAT(observer_->Events(), ElementsAre(Updated("a", "picky:1"), Updated("b", "picky:2"),
                                               Deleted("a", "picky:1"), Deleted("b", "picky:2")));
  EXPECT_EQ(store->NumEntries(), 0u);
}

// A key that knows which creation it came from.
class SerialKey final : public Key {
 public:
  explicit SerialKey(int serial) : serial_(serial) {}
  std::string GetKeyName() const override { return name_; }
  absl::StatusOr<std::string> Marshal() const override { return value_; }
  absl::Status Unmarshal(std::string_view key, std::string_view data) override {
    name_.assign(key);
    value_.assign(data);
    return absl::OkStatus();
  }
  int serial() const { return serial_; }

 private:
  const int serial_;
  std::string name_, value_;
};

// Records "U:<name>#<serial>" and "D:<name>#<serial>" (serial -1: not a SerialKey).
class SerialObserver final : public Observer {
 public:
  void OnUpdate(const Key& key) override { Record("U:", key); }
  void OnDelete(const NamedKey& key) override { Record("D:", key); }
  std::vector<std::string> Calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  size_t NumCalls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_.size();
  }

 private:
  void Record(const char* kind, const NamedKey& key) {
    const auto* serial_key = dynamic_cast<const SerialKey*>(&key);
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(kind + key.GetKeyName() + "#" +
                     std::to_string(serial_key != nullptr ? serial_key->serial() : -1));
  }
  mutable std::mutex mu_;  // guards calls_
  std::vector<std::string> calls_;
};

// Whatever removes a key (a delete event, staleness at kListDone, Drain), OnDelete is handed the
// object of the key's last OnUpdate.
TEST_F(WatchStoreTest, OnDeleteGetsTheObjectTheLastOnUpdateGot) {
  auto observer = std::make_shared<SerialObserver>();
  std::atomic<int> serial{0};
  auto store = internal::NewAsyncRestartableWatchStore(
      "qux", [&]() -> std::unique_ptr<Key> { return std::make_unique<SerialKey>(++serial); },
      observer);
  {
    ScriptedWatchStoreBackend backend(
        {Create("a", "1"), Create("b", "1"), Create("c", "1"), ListDone()});
    DrivenWatch run(*store, executor_, backend, "foo");
    EXPECT_TRUE(store->Synced());
    ASSERT_TRUE(backend.Feed(Modify("a", "2")));
    ASSERT_TRUE(backend.Feed(Remove("a")));
    executor_.RunUntilIdle();
    EXPECT_EQ(observer->NumCalls(), 5u);
  }
  {  // A re-list without "c": it is stale at kListDone.
    ScriptedWatchStoreBackend backend({Create("b", "2"), ListDone()});
    DrivenWatch run(*store, executor_, backend, "foo");
    EXPECT_EQ(observer->NumCalls(), 7u);
  }
  store->Drain();
  EXPECT_THAT(observer->Calls(), ElementsAre("U:a#1", "U:b#2", "U:c#3", "U:a#4", "D:a#4",  // run 1
                                             "U:b#5", "D:c#3",                             // run 2
                                             "D:b#5"));                                    // Drain
  EXPECT_EQ(serial.load(), 5);
}

}  // namespace
}  // namespace kvstore::store

#include "kvstore/store/watch_store.h"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "core/planted_bugs.h"
#include "kvstore/paths.h"
#include "spdlog/spdlog.h"
#include "store/async_stores.h"

namespace kvstore::store {
namespace {

using kvstore::internal::NextEvents;
using kvstore::internal::RunOnThisThread;
using kvstore::internal::Task;

// Room for a burst of events between the backend's thread and the observer; large enough that
// the backend hands over events in batches rather than one per wake-up.
constexpr size_t kWatcherCapacity = 1024;

class RestartableWatchStore final : public internal::AsyncWatchStore {
 public:
  RestartableWatchStore(std::string cluster_name, KeyCreator key_creator,
                        std::shared_ptr<Observer> observer, RestartableWatchStoreOptions opts)
      : cluster_name_(std::move(cluster_name)),
        key_creator_(std::move(key_creator)),
        observer_(std::move(observer)),
        entries_metric_(opts.entries_metric),
        metrics_(std::move(opts.metrics)),
        on_sync_callbacks_(std::move(opts.on_sync_callbacks)) {}

  // The observer is called from the caller's thread, as the coroutine runs there.
  void Watch(const Context& ctx, WatchStoreBackend& backend, std::string_view prefix) override {
    Begin("Watch");
    RunOnThisThread([&](Executor& here) { return Run(here, ctx, backend, std::string(prefix)); });
  }

  Task<void> WatchAsync(Executor& executor, Context ctx, WatchStoreBackend& backend,
                        std::string prefix) override {
    Begin("Watch");
    return Run(executor, std::move(ctx), backend, std::move(prefix));
  }

  uint64_t NumEntries() const override { return num_entries_; }

  bool Synced() const override { return synced_; }

  void Drain() override {
    Begin("Drain");
    spdlog::info("Draining restartable watch store (cluster {})", cluster_name_);
    DeleteKeys(/*stale_only=*/false);
    busy_ = false;
  }

 private:
  // Marks a Watch or Drain as running. Throws std::logic_error when one already is.
  void Begin(const char* what) {
    if (busy_.exchange(true)) {
      throw std::logic_error(std::string("WatchStore::") + what +
                             " called while a Watch or Drain is running");
    }
  }

  // One Watch, started by Begin. Waits for events without holding a thread; the observer is
  // called on `executor`.
  Task<void> Run(Executor& executor, Context ctx, WatchStoreBackend& backend, std::string prefix) {
    // Only children of the prefix, never a sibling such as "cluster10" for "cluster1".
    const std::string watched = DirectoryPrefix(prefix);

    prometheus::Gauge* synced_metric =
        metrics_ ? &metrics_->InitialSyncCompleted(GetScopeFromKey(watched), cluster_name_, "read")
                 : nullptr;
    SetGauge(synced_metric, 0);
    spdlog::info("Starting restartable watch store (prefix {}, cluster {})", watched,
                 cluster_name_);

    struct Finish {
      RestartableWatchStore* store;
      prometheus::Gauge* synced_metric;
      ~Finish() {
        SetGauge(synced_metric, 0);
        store->synced_ = false;
        store->busy_ = false;
      }
    } finish{this, synced_metric};

    for (const RecordPtr& record : entries_) record->stale = true;

    // A delete is looked up by name in entries_: the backend need not keep every value for it.
    std::shared_ptr<Watcher> watcher = backend.ListAndWatchWith(
        ctx, watched, kWatcherCapacity, WatchOptions{.delete_values = false});
    if (!watcher) {
      spdlog::error("Backend returned no watcher for prefix {}", watched);
      co_return;
    }
    // Every event received by the time the loop wakes up, taken at once.
    std::deque<KeyValueEvent> batch;
    while (!ctx.Done() && co_await NextEvents(executor, *watcher, ctx, &batch)) {
      for (; !batch.empty() && !ctx.Done(); batch.pop_front()) {
        KeyValueEvent& event = batch.front();
        if (event.type == EventType::kListDone) {
          ListDone(ctx, synced_metric);
          continue;
        }
        std::string_view name = event.key;
        if (name.starts_with(watched)) name.remove_prefix(watched.size());
        switch (event.type) {
          case EventType::kCreate:
          case EventType::kModify:
            HandleUpsert(name, std::move(event.value));
            break;
          case EventType::kDelete:
            HandleDelete(name);
            break;
          case EventType::kListDone:
            break;
        }
      }
      batch.clear();
    }
    // Ends the backend's side of the watch (if ctx is done) and waits until it let go.
    watcher->Stop();
    spdlog::info("Stopped restartable watch store (prefix {}, cluster {})", watched, cluster_name_);
  }

  // What the store keeps of a key: the Key object its last OnUpdate got, handed to OnDelete as
  // well, and the name it was listed under, inline in the record's own allocation. The name is
  // kept (as Cilium keys its map by it) because GetKeyName() need not return it, and would build
  // a string at every comparison. The object replaces the copy of the value kept before: a key
  // costs its Key object (for a KVPair: 72 bytes and a separate value buffer) and a record of
  // 16 bytes plus the name.
  class Record {
   public:
    static Record* Make(std::string_view name, std::unique_ptr<Key> key) {
      void* memory = ::operator new(sizeof(Record) + name.size());
      return new (memory) Record(name, std::move(key));
    }
    static void Free(Record* record) {
      record->~Record();
      ::operator delete(record);
    }
    std::string_view name() const { return {reinterpret_cast<const char*>(this + 1), name_size_}; }
    const Key& key() const { return *key_; }
    void set_key(std::unique_ptr<Key> key) { key_ = std::move(key); }
    bool stale = false;  // not seen since the current Watch started listing

   private:
    Record(std::string_view name, std::unique_ptr<Key> key)
        : key_(std::move(key)), name_size_(static_cast<uint32_t>(name.size())) {
      std::memcpy(reinterpret_cast<char*>(this + 1), name.data(), name.size());
    }

    std::unique_ptr<Key> key_;  // never null
    uint32_t name_size_;
  };
  struct RecordDeleter {
    void operator()(Record* record) const { Record::Free(record); }
  };
  using RecordPtr = std::unique_ptr<Record, RecordDeleter>;
  // Orders records by name; also compares with bare names, for lookups.
  struct ByName {
    using is_transparent = void;
    static std::string_view Name(const RecordPtr& r) { return r->name(); }
    static std::string_view Name(std::string_view name) { return name; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return Name(a) < Name(b);
    }
  };

  static void SetGauge(prometheus::Gauge* gauge, double value) {
    if (gauge != nullptr) gauge->Set(value);
  }

  void ListDone(const Context& ctx, prometheus::Gauge* synced_metric) {
    if (kvstore::internal::Planted(kvstore::internal::PlantedBug::kNoStaleDelete)) {
      for (const RecordPtr& record : entries_) record->stale = false;
    } else {
      DeleteKeys(/*stale_only=*/true);
    }
    SetGauge(synced_metric, 1);
    synced_ = true;
    // Once ever: a later Watch (a reconnection) does not run them again.
    std::vector<std::function<void(const Context&)>> callbacks;
    callbacks.swap(on_sync_callbacks_);
    for (const auto& callback : callbacks) {
      if (callback) callback(ctx);
    }
  }

  // A Key for `name` and `value` made by the KeyCreator, or nullptr (logged) when that fails.
  std::unique_ptr<Key> MakeKey(std::string_view name, std::string&& value) const {
    std::unique_ptr<Key> key = key_creator_ ? key_creator_() : KVPairCreator();
    if (!key) {
      spdlog::error("KeyCreator returned no key; ignoring key {}", name);
      return nullptr;
    }
    if (absl::Status status = key->UnmarshalOwned(name, std::move(value)); !status.ok()) {
      spdlog::warn("Unable to unmarshal value of key {}: {}", name, status.ToString());
      return nullptr;
    }
    return key;
  }

  // Takes `value`: the store's copy is the one the backend received.
  void HandleUpsert(std::string_view name, std::string&& value) {
    std::unique_ptr<Key> key = MakeKey(name, std::move(value));
    if (!key) return;
    const Key& stored = *key;
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      entries_.insert(RecordPtr(Record::Make(name, std::move(key))));
    } else {
      // The name, and so the order of the set, stays.
      (*it)->set_key(std::move(key));
      (*it)->stale = false;
    }
    EntriesChanged();
    if (observer_) observer_->OnUpdate(stored);
  }

  void HandleDelete(std::string_view name) {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      spdlog::debug("Ignoring deletion of unknown key {}", name);
      return;
    }
    RecordPtr record = std::move(const_cast<RecordPtr&>(*it));
    entries_.erase(it);
    EntriesChanged();
    // The object OnUpdate got: no second Unmarshal, which could fail or differ.
    if (observer_) observer_->OnDelete(record->key());
  }

  // Emits a deletion for every known key, or only those still marked stale.
  void DeleteKeys(bool stale_only) {
    std::vector<std::string> names;
    for (const RecordPtr& record : entries_) {
      if (!stale_only || record->stale) names.emplace_back(record->name());
    }
    for (const std::string& name : names) HandleDelete(name);
  }

  void EntriesChanged() {
    num_entries_ = entries_.size();
    SetGauge(entries_metric_, static_cast<double>(entries_.size()));
  }

  const std::string cluster_name_;
  const KeyCreator key_creator_;
  const std::shared_ptr<Observer> observer_;
  prometheus::Gauge* const entries_metric_;
  const std::shared_ptr<Metrics> metrics_;

  std::atomic<bool> busy_{false};    // a Watch or Drain is running
  std::atomic<bool> synced_{false};  // between kListDone and the end of the current Watch
  std::atomic<uint64_t> num_entries_{0};

  // Used only by the one running Watch or Drain: busy_ serializes them.
  std::vector<std::function<void(const Context&)>> on_sync_callbacks_;
  // By name relative to the prefix. A B-tree of pointers: a few bytes per key besides the record.
  absl::btree_set<RecordPtr, ByName> entries_;
};

}  // namespace

std::unique_ptr<WatchStore> NewRestartableWatchStore(std::string cluster_name,
                                                     KeyCreator key_creator,
                                                     std::shared_ptr<Observer> observer,
                                                     RestartableWatchStoreOptions opts) {
  return internal::NewAsyncRestartableWatchStore(std::move(cluster_name), std::move(key_creator),
                                                 std::move(observer), std::move(opts));
}

std::unique_ptr<internal::AsyncWatchStore> internal::NewAsyncRestartableWatchStore(
    std::string cluster_name, KeyCreator key_creator, std::shared_ptr<Observer> observer,
    RestartableWatchStoreOptions opts) {
  if (!key_creator) {
    spdlog::error("NewRestartableWatchStore: no KeyCreator given, using KVPairCreator");
  }
  return std::make_unique<RestartableWatchStore>(std::move(cluster_name), std::move(key_creator),
                                                 std::move(observer), std::move(opts));
}

}  // namespace kvstore::store

#include "kvstore/store/watch_store.h"

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kvstore/paths.h"
#include "spdlog/spdlog.h"

namespace kvstore::store {
namespace {

// Room for a burst of events between the backend's thread and the observer; large enough that
// the backend hands over events in batches rather than one per wake-up.
constexpr size_t kWatcherCapacity = 1024;

class RestartableWatchStore final : public WatchStore {
 public:
  RestartableWatchStore(std::string cluster_name, KeyCreator key_creator,
                        std::shared_ptr<Observer> observer, RestartableWatchStoreOptions opts)
      : cluster_name_(std::move(cluster_name)),
        key_creator_(std::move(key_creator)),
        observer_(std::move(observer)),
        entries_metric_(opts.entries_metric),
        metrics_(std::move(opts.metrics)),
        on_sync_callbacks_(std::move(opts.on_sync_callbacks)) {}

  void Watch(const Context& ctx, WatchStoreBackend& backend, std::string_view prefix) override {
    if (busy_.exchange(true)) {
      throw std::logic_error("WatchStore::Watch called while a Watch or Drain is running");
    }
    // Exactly one trailing "/": only children of the prefix, never a sibling such as
    // "cluster10" for "cluster1".
    std::string watched(prefix);
    while (watched.ends_with('/')) watched.pop_back();
    watched += '/';

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

    for (auto& [name, entry] : entries_) entry.stale = true;

    std::shared_ptr<Watcher> watcher = backend.ListAndWatch(ctx, watched, kWatcherCapacity);
    if (!watcher) {
      spdlog::error("Backend returned no watcher for prefix {}", watched);
      return;
    }
    while (!ctx.Done()) {
      std::optional<KeyValueEvent> event = watcher->Next(ctx);
      if (!event.has_value()) break;
      if (event->type == EventType::kListDone) {
        ListDone(ctx, synced_metric);
        continue;
      }
      std::string_view name = event->key;
      if (name.starts_with(watched)) name.remove_prefix(watched.size());
      switch (event->type) {
        case EventType::kCreate:
        case EventType::kModify:
          HandleUpsert(std::string(name), event->value);
          break;
        case EventType::kDelete:
          HandleDelete(std::string(name));
          break;
        case EventType::kListDone:
          break;
      }
    }
    // Ends the backend's side of the watch (if ctx is done) and waits until it let go.
    watcher->Stop();
    spdlog::info("Stopped restartable watch store (prefix {}, cluster {})", watched, cluster_name_);
  }

  uint64_t NumEntries() const override { return num_entries_; }

  bool Synced() const override { return synced_; }

  void Drain() override {
    if (busy_.exchange(true)) {
      throw std::logic_error("WatchStore::Drain called while a Watch or Drain is running");
    }
    spdlog::info("Draining restartable watch store (cluster {})", cluster_name_);
    DeleteKeys(/*stale_only=*/false);
    busy_ = false;
  }

 private:
  struct Entry {
    std::unique_ptr<Key> key;
    bool stale = false;  // not seen since the current Watch started listing
  };

  static void SetGauge(prometheus::Gauge* gauge, double value) {
    if (gauge != nullptr) gauge->Set(value);
  }

  void ListDone(const Context& ctx, prometheus::Gauge* synced_metric) {
    DeleteKeys(/*stale_only=*/true);
    SetGauge(synced_metric, 1);
    synced_ = true;
    // Once ever: a later Watch (a reconnection) does not run them again.
    std::vector<std::function<void(const Context&)>> callbacks;
    callbacks.swap(on_sync_callbacks_);
    for (const auto& callback : callbacks) {
      if (callback) callback(ctx);
    }
  }

  void HandleUpsert(std::string name, std::string_view value) {
    std::unique_ptr<Key> key = key_creator_ ? key_creator_() : KVPairCreator();
    if (!key) {
      spdlog::error("KeyCreator returned no key; ignoring key {}", name);
      return;
    }
    if (absl::Status status = key->Unmarshal(name, value); !status.ok()) {
      spdlog::warn("Unable to unmarshal value of key {}: {}", name, status.ToString());
      return;
    }
    Entry& entry = entries_[std::move(name)];
    entry.key = std::move(key);
    entry.stale = false;
    EntriesChanged();
    if (observer_) observer_->OnUpdate(*entry.key);
  }

  void HandleDelete(const std::string& name) {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      spdlog::debug("Ignoring deletion of unknown key {}", name);
      return;
    }
    std::unique_ptr<Key> key = std::move(it->second.key);
    entries_.erase(it);
    EntriesChanged();
    if (observer_) observer_->OnDelete(*key);
  }

  // Emits a deletion for every known key, or only those still marked stale.
  void DeleteKeys(bool stale_only) {
    std::vector<std::string> names;
    for (const auto& [name, entry] : entries_) {
      if (!stale_only || entry.stale) names.push_back(name);
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
  std::map<std::string, Entry> entries_;  // by name relative to the prefix
};

}  // namespace

std::unique_ptr<WatchStore> NewRestartableWatchStore(std::string cluster_name,
                                                     KeyCreator key_creator,
                                                     std::shared_ptr<Observer> observer,
                                                     RestartableWatchStoreOptions opts) {
  if (!key_creator) {
    spdlog::error("NewRestartableWatchStore: no KeyCreator given, using KVPairCreator");
  }
  return std::make_unique<RestartableWatchStore>(std::move(cluster_name), std::move(key_creator),
                                                 std::move(observer), std::move(opts));
}

}  // namespace kvstore::store

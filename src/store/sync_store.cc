#include "kvstore/store/sync_store.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/guarded.h"
#include "core/planted_bugs.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "kvstore/workqueue/rate_limiting_queue.h"
#include "spdlog/spdlog.h"
#include "store/async_stores.h"

namespace kvstore::store {
namespace {

using kvstore::internal::Task;

using Callbacks = std::vector<std::function<void(const Context&)>>;

// The clock's wall time as RFC 3339 in UTC, e.g. "2024-05-01T12:00:00Z".
std::string Rfc3339Now(const Clock& clock) {
  std::time_t now = std::chrono::system_clock::to_time_t(clock.WallNow());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(buf, n);
}

// WARNING - STABLE API: the two functions below compose the paths this store writes. Cilium
// agents read them (and write them the same way), so changing them breaks collaborators.

// Where key `name` of a store on `prefix` lives: <prefix>/<name>.
std::string KeyPath(std::string_view prefix, std::string_view name) {
  return JoinPath(prefix, name);
}

// The synced canary of a store: cilium/synced/<cluster>/<synced key>, the synced key being the
// store's prefix unless overridden.
std::string SyncedCanaryPath(std::string_view cluster_name, std::string_view prefix,
                             std::string_view synced_key_override) {
  return SyncedKeyPath(cluster_name, synced_key_override.empty() ? prefix : synced_key_override);
}

// Everything the workers, the public methods and the backend's lease-expired observers share. The
// observers hold it weakly, so a late call from the backend after Run returned is harmless.
class SyncStoreCore : public std::enable_shared_from_this<SyncStoreCore> {
 public:
  SyncStoreCore(std::string cluster_name, std::shared_ptr<SyncStoreBackend> backend,
                std::string prefix, WorkqueueSyncStoreOptions opts, Executor* blocking)
      : blocking_(blocking != nullptr ? blocking : &kvstore::internal::BlockingPool()),
        cluster_name_(std::move(cluster_name)),
        prefix_(std::move(prefix)),
        synced_key_(SyncedCanaryPath(cluster_name_, prefix_, opts.synced_key_override)),
        backend_(std::move(backend)),
        workers_(opts.workers == 0 ? 1 : opts.workers),
        with_lease_(opts.with_lease),
        metrics_(std::move(opts.metrics)),
        queue_size_(metrics_ ? &metrics_->SyncQueueSize(GetScopeFromKey(prefix_), cluster_name_)
                             : nullptr),
        errors_(metrics_ ? &metrics_->SyncErrors(GetScopeFromKey(prefix_), cluster_name_)
                         : nullptr),
        synced_metric_(metrics_ ? &metrics_->InitialSyncCompleted(GetScopeFromKey(prefix_),
                                                                  cluster_name_, "write")
                                : nullptr),
        clock_(opts.clock ? opts.clock : SystemClock()),
        queue_(std::move(opts.rate_limiter), clock_, QueueOptionsFor(queue_size_)) {}

  // Marks the store as run. Throws std::logic_error on a second run.
  void BeginRun() {
    MutexLock lock(mu_);
    if (run_started_) throw std::logic_error("SyncStore::Run called twice");
    run_started_ = true;
  }

  // Run, started by BeginRun: `workers_` workers wait on `executor` for keys and hand each write
  // to blocking_, until `ctx` is done.
  Task<void> Run(Executor& executor, Context ctx) {
    SetSyncedMetric(false);
    spdlog::info("Starting workqueue-based sync store (prefix {}, cluster {}, {} workers)", prefix_,
                 cluster_name_, workers_);
    if (backend_) {
      std::weak_ptr<SyncStoreCore> weak = weak_from_this();
      auto on_expired = [weak](std::string_view key) {
        if (auto core = weak.lock()) core->HandleExpiredLease(key);
      };
      backend_->RegisterLeaseExpiredObserver(prefix_, on_expired);
      backend_->RegisterLeaseExpiredObserver(synced_key_, on_expired);
    }

    // Every worker takes up to max_batch waiting items (one when the backend does not batch) and
    // writes them. The queue never hands out an item being processed, so no two workers write
    // one key at once.
    const size_t max_batch = std::max<size_t>(backend_ ? backend_->MaxBatchOps() : 1, 1);
    std::vector<Task<void>> workers;
    workers.reserve(workers_);
    for (unsigned i = 0; i < workers_; ++i) workers.push_back(Worker(executor, ctx, max_batch));
    co_await kvstore::internal::WhenAll(executor, std::move(workers));

    if (backend_) {
      backend_->RegisterLeaseExpiredObserver(prefix_, nullptr);
      backend_->RegisterLeaseExpiredObserver(synced_key_, nullptr);
    }
    spdlog::info("Shutting down workqueue-based sync store (prefix {}, cluster {})", prefix_,
                 cluster_name_);
    queue_.ShutDown();
    SetSyncedMetric(false);
  }

  absl::Status UpsertKey(const Key& key) {
    std::string name = key.GetKeyName();
    if (absl::Status name_ok = CheckKeyName(name); !name_ok.ok()) return name_ok;
    absl::StatusOr<std::string> value = key.Marshal();
    if (!value.ok()) {
      return absl::Status(value.status().code(), absl::StrCat("failed marshaling key \"", name,
                                                              "\": ", value.status().message()));
    }
    if (name == synced_key_) {
      return absl::InvalidArgumentError(
          absl::StrCat("key name \"", name, "\" is reserved for the synced key of this store"));
    }
    MutexLock lock(mu_);
    KeyState& state = keys_[name];
    if (state.value.has_value() && *state.value == *value) {
      spdlog::debug("Ignoring upsert of already up-to-date key {}", name);
      return absl::OkStatus();
    }
    state.value = *std::move(value);
    QueueChange(name, state);
    return absl::OkStatus();
  }

  absl::Status DeleteKey(const NamedKey& key) {
    std::string name = key.GetKeyName();
    MutexLock lock(mu_);
    auto it = keys_.find(name);
    if (it == keys_.end() || !it->second.value.has_value()) {
      spdlog::debug("Ignoring delete of unknown key {}", name);
      return absl::OkStatus();
    }
    it->second.value.reset();
    QueueChange(name, it->second);
    return absl::OkStatus();
  }

  absl::Status Synced(Callbacks callbacks) {
    MutexLock lock(mu_);
    if (synced_called_) return absl::OkStatus();
    synced_called_ = true;
    synced_callbacks_ = std::move(callbacks);
    queue_.Add(synced_key_);
    return absl::OkStatus();
  }

 private:
  // What the store last accepted for a key, until a delete of it has been written.
  struct KeyState {
    std::optional<std::string> value;  // nullopt: to be deleted
    uint64_t change = 0;               // sequence number of the latest change
  };

  static workqueue::QueueOptions QueueOptionsFor(prometheus::Gauge* queue_size) {
    workqueue::QueueOptions opts;
    if (queue_size != nullptr) {
      opts.on_length_change = [queue_size](size_t len) {
        queue_size->Set(static_cast<double>(len));
      };
    }
    return opts;
  }

  void SetSyncedMetric(bool synced) {
    if (synced_metric_ != nullptr) synced_metric_->Set(synced ? 1 : 0);
  }

  // Records a change of `name` and queues it. REQUIRES: mu_ held.
  void QueueChange(const std::string& name, KeyState& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    state.change = ++last_change_;
    // Keeps the first change: any later write of the key also writes what was upserted before
    // Synced().
    if (!synced_called_) pending_sync_.try_emplace(name, state.change);
    queue_.Add(name);
  }

  // The one write path: writes the latest state of each key among `items` with one ApplyBatch
  // (the backend's default applies them one by one with Update/Delete). The synced key, when
  // among them, is written last and on its own: it must follow every earlier key, which its
  // pending check decides.
  void WriteItems(const Context& ctx, const std::vector<std::string>& items) {
    struct Pending {
      const std::string* name;
      std::string path;
      std::optional<std::string> value;  // nullopt: a delete
      uint64_t change;
    };
    std::vector<Pending> pending;
    pending.reserve(items.size());
    bool synced_key = false;
    {
      MutexLock lock(mu_);
      for (const std::string& item : items) {
        if (item == synced_key_) {
          synced_key = true;
          continue;
        }
        auto it = keys_.find(item);
        if (it == keys_.end()) continue;  // its delete was written already
        pending.push_back(Pending{&item, std::string(), it->second.value, it->second.change});
      }
    }
    if (!pending.empty()) {
      std::vector<WriteOp> ops;
      ops.reserve(pending.size());
      for (Pending& p : pending) {
        p.path = KeyPath(prefix_, *p.name);
        ops.push_back(WriteOp{
            p.path, p.value.has_value() ? std::optional<std::string_view>(*p.value) : std::nullopt,
            with_lease_});
      }
      std::vector<absl::Status> results = backend_
                                              ? backend_->ApplyBatch(ctx, ops)
                                              : std::vector<absl::Status>(ops.size(), NoBackend());
      for (size_t i = 0; i < pending.size(); ++i) {
        absl::Status status = i < results.size()
                                  ? results[i]
                                  : absl::InternalError("backend returned too few batch results");
        WriteDone(*pending[i].name, pending[i].path, pending[i].value.has_value(),
                  pending[i].change, status);
      }
    }
    if (synced_key) WriteSyncedKey(ctx);
  }

  // One worker: returns once `ctx` is done (the queue then hands out nothing more).
  Task<void> Worker(Executor& executor, Context ctx, size_t max_batch) {
    while (true) {
      std::vector<std::string> items =
          co_await kvstore::internal::NextItems(executor, queue_, ctx, max_batch);
      if (items.empty()) break;
      // Done right after the write, on the same thread: a key changed meanwhile is queued again
      // behind what is already waiting, as when the worker was a thread of its own.
      co_await kvstore::internal::Offload(*blocking_, executor, [&] {
        WriteItems(ctx, items);
        for (const std::string& item : items) queue_.Done(item);
        return true;
      });
    }
  }

  // Records the outcome of writing change number `change` of `name` (an upsert when `upsert`).
  void WriteDone(const std::string& name, const std::string& path, bool upsert, uint64_t change,
                 const absl::Status& status) {
    if (!status.ok()) {
      spdlog::warn("Failed {} key {} in kvstore, retrying: {}", upsert ? "upserting" : "deleting",
                   path, status.ToString());
      Failed(name);
      return;
    }
    queue_.Forget(name);

    MutexLock lock(mu_);
    auto it = keys_.find(name);
    if (!upsert && it != keys_.end() && it->second.change == change) keys_.erase(it);
    auto pending = pending_sync_.find(name);
    if (pending != pending_sync_.end() && change >= pending->second) {
      pending_sync_.erase(pending);
      if (pending_sync_.empty() && synced_key_waiting_) {
        synced_key_waiting_ = false;
        queue_.Add(synced_key_);
      }
    }
  }

  void WriteSyncedKey(const Context& ctx) {
    {
      MutexLock lock(mu_);
      if (!pending_sync_.empty() &&
          !kvstore::internal::Planted(kvstore::internal::PlantedBug::kCanaryBeforeDrain)) {
        // Not a failure: the last pending write queues the synced key again.
        synced_key_waiting_ = true;
        return;
      }
    }
    absl::Status status = backend_
                              ? backend_->Update(ctx, synced_key_, Rfc3339Now(*clock_), with_lease_)
                              : NoBackend();
    if (!status.ok()) {
      spdlog::warn("Failed upserting synced key {} in kvstore, retrying: {}", synced_key_,
                   status.ToString());
      Failed(synced_key_);
      return;
    }
    queue_.Forget(synced_key_);
    spdlog::info("Initial synchronization to the kvstore completed ({})", synced_key_);
    SetSyncedMetric(true);

    Callbacks callbacks;
    {
      MutexLock lock(mu_);
      if (callbacks_ran_) return;
      callbacks_ran_ = true;
      callbacks.swap(synced_callbacks_);
    }
    // A callback that throws is logged and counted, and the next one still runs: the exception
    // would otherwise end this worker (the store would stop writing keys, and with one worker
    // Run would return before its context is done).
    for (const auto& callback : callbacks) {
      if (callback) {
        kvstore::internal::RunGuarded("a SyncStore synced callback", [&] { callback(ctx); });
      }
    }
  }

  static absl::Status NoBackend() {
    return absl::FailedPreconditionError("SyncStore was created without a backend");
  }

  void Failed(const std::string& item) {
    if (errors_ != nullptr) errors_->Increment();
    queue_.AddRateLimited(item);
  }

  // Runs on a backend thread. `key` is absolute.
  void HandleExpiredLease(std::string_view key) {
    MutexLock lock(mu_);
    if (key == synced_key_) {
      // Rewritten without callbacks: they run once, after the first successful write.
      if (synced_called_) queue_.Add(synced_key_);
      return;
    }
    std::optional<std::string_view> name = NameBelow(prefix_, key);
    if (!name.has_value()) return;
    if (kvstore::internal::Planted(kvstore::internal::PlantedBug::kLostLeaseNotRequeued)) return;
    auto it = keys_.find(std::string(*name));
    if (it == keys_.end() || !it->second.value.has_value()) return;
    spdlog::debug("Re-queueing key {} as its lease expired", it->first);
    QueueChange(it->first, it->second);
  }

  // Where the blocking writes run: the library's blocking pool, or the simulation's executor.
  Executor* const blocking_;
  const std::string cluster_name_;
  const std::string prefix_;
  // The synced canary's absolute path; also its item in the queue.
  const std::string synced_key_;
  const std::shared_ptr<SyncStoreBackend> backend_;
  const unsigned workers_;
  const bool with_lease_;
  const std::shared_ptr<Metrics> metrics_;
  prometheus::Gauge* const queue_size_;     // null without metrics
  prometheus::Counter* const errors_;       // null without metrics
  prometheus::Gauge* const synced_metric_;  // null without metrics
  const std::shared_ptr<Clock> clock_;

  // Items are key names and synced_key_. Its length-change hook feeds queue_size_.
  workqueue::RateLimitingQueue<std::string> queue_;

  Mutex mu_;  // guards every field below; may be held while calling queue_ (never inversely)
  std::unordered_map<std::string, KeyState> keys_ ABSL_GUARDED_BY(mu_);
  uint64_t last_change_ ABSL_GUARDED_BY(mu_) = 0;
  // Keys changed before Synced() and not written since, with the sequence number of that change.
  std::unordered_map<std::string, uint64_t> pending_sync_ ABSL_GUARDED_BY(mu_);
  bool synced_called_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_key_waiting_ ABSL_GUARDED_BY(mu_) =
      false;  // the synced key waits for pending_sync_ to empty
  bool callbacks_ran_ ABSL_GUARDED_BY(mu_) = false;
  Callbacks synced_callbacks_ ABSL_GUARDED_BY(mu_);
  bool run_started_ ABSL_GUARDED_BY(mu_) = false;
};

class WorkqueueSyncStore final : public internal::AsyncSyncStore {
 public:
  explicit WorkqueueSyncStore(std::shared_ptr<SyncStoreCore> core) : core_(std::move(core)) {}

  // The workers wait on the caller's thread; writes run on the blocking pool.
  void Run(const Context& ctx) override {
    core_->BeginRun();
    kvstore::internal::RunOnThisThread([&](Executor& here) { return core_->Run(here, ctx); });
  }
  Task<void> RunAsync(Executor& executor, Context ctx) override {
    core_->BeginRun();
    return RunKeepingCore(core_, executor, std::move(ctx));
  }
  absl::Status UpsertKey(const Context&, const Key& key) override { return core_->UpsertKey(key); }
  absl::Status DeleteKey(const Context&, const NamedKey& key) override {
    return core_->DeleteKey(key);
  }
  absl::Status Synced(const Context&, Callbacks callbacks) override {
    return core_->Synced(std::move(callbacks));
  }

 private:
  // The task keeps the core alive even if the store is destroyed while it runs.
  static Task<void> RunKeepingCore(std::shared_ptr<SyncStoreCore> core, Executor& executor,
                                   Context ctx) {
    co_await core->Run(executor, std::move(ctx));
  }

  const std::shared_ptr<SyncStoreCore> core_;
};

}  // namespace

std::unique_ptr<SyncStore> NewWorkqueueSyncStore(std::string cluster_name,
                                                 std::shared_ptr<SyncStoreBackend> backend,
                                                 std::string prefix,
                                                 WorkqueueSyncStoreOptions opts) {
  return internal::NewAsyncWorkqueueSyncStore(std::move(cluster_name), std::move(backend),
                                              std::move(prefix), std::move(opts));
}

std::unique_ptr<internal::AsyncSyncStore> internal::NewAsyncWorkqueueSyncStore(
    std::string cluster_name, std::shared_ptr<SyncStoreBackend> backend, std::string prefix,
    WorkqueueSyncStoreOptions opts, Executor* blocking) {
  return std::make_unique<WorkqueueSyncStore>(std::make_shared<SyncStoreCore>(
      std::move(cluster_name), std::move(backend), std::move(prefix), std::move(opts), blocking));
}

}  // namespace kvstore::store

#include "kvstore/store/shared_store.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/blocking_pool.h"
#include "core/guarded.h"
#include "core/task.h"
#include "core/watcher_producer.h"
#include "kvstore/events.h"
#include "kvstore/executor.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "spdlog/spdlog.h"

namespace kvstore::store {
namespace {

using SteadyTime = Clock::time_point;
using kvstore::internal::Task;

// Room for a burst of events (a re-list after a reconnect) without stalling the backend.
constexpr size_t kWatcherCapacity = 1024;

class SharedStoreImpl final : public SharedStore {
 public:
  SharedStoreImpl(Configuration config, std::shared_ptr<Backend> backend)
      : config_(std::move(config)),
        backend_(std::move(backend)),
        clock_(config_.clock != nullptr ? config_.clock : SystemClock()),
        watch_prefix_(DirectoryPrefix(config_.prefix)),
        sync_interval_(config_.synchronization_interval.count() > 0
                           ? config_.synchronization_interval
                           : std::chrono::milliseconds(kDefaultSynchronizationInterval)),
        delete_delay_(std::max(config_.shared_key_delete_delay, std::chrono::milliseconds(0))) {
    std::tie(ctx_, cancel_) = WithCancel(config_.context);
  }

  ~SharedStoreImpl() override { Release(); }

  SharedStoreImpl(const SharedStoreImpl&) = delete;
  SharedStoreImpl& operator=(const SharedStoreImpl&) = delete;

  // Starts watching and syncing; returns once the initial list arrived, or the error that ended
  // the wait. On error the caller destroys the store, which stops everything started here.
  absl::Status Start() {
    // Join's wait on cv_ (on the clock, which knows nothing of contexts) ends
    // when the store's context is done through this flag, set and signalled under mu_.
    ctx_wakeup_.emplace(ctx_, [this] {
      MutexLock guard(mu_);
      ctx_done_ = true;
      cv_.notify_all();
    });
    // A delete is looked up by name in shared_keys_: the backend need not keep every value for it.
    watcher_ = backend_->ListAndWatchWith(ctx_, watch_prefix_, kWatcherCapacity,
                                          WatchOptions{.delete_values = false});
    if (watcher_ == nullptr) {
      if (config_.context.Done()) return config_.context.Err();
      return absl::UnavailableError(
          absl::StrCat("shared store ", config_.prefix, ": backend returned no watcher"));
    }
    // Read before the tasks start, so that once Join returned, a test moving the clock moves
    // it past these deadlines, never before they were taken.
    // The first sync's deadline context is armed here for the same reason.
    const SteadyTime list_deadline = clock_->Now() + kJoinListTimeout;
    const SteadyTime first_sync = clock_->Now() + sync_interval_;
    SyncWait first_wait = NewSyncWait(first_sync);
    {
      MutexLock guard(mu_);
      watch_running_ = true;
      sync_running_ = true;
    }
    kvstore::internal::Spawn(strand_, WatchLoop(), [this] {
      MutexLock guard(mu_);
      watch_running_ = false;
      watch_ended_ = true;
      cv_.notify_all();
    });
    kvstore::internal::Spawn(strand_, SyncLoop(first_sync, std::move(first_wait)), [this] {
      MutexLock guard(mu_);
      sync_running_ = false;
      cv_.notify_all();
    });

    MutexLock lock(mu_);
    while (!list_done_ && !watch_ended_ && !ctx_done_ && clock_->Now() < list_deadline) {
      clock_->WaitUntil(lock.native(), cv_.native(), list_deadline);
    }
    const bool list_done = list_done_;
    const bool ended = watch_ended_ || ctx_done_;
    lock.unlock();
    if (list_done) return absl::OkStatus();
    if (config_.context.Done()) return config_.context.Err();
    if (!ended) {
      return absl::DeadlineExceededError(
          absl::StrCat("shared store ", config_.prefix,
                       ": timeout while retrieving the initial list of objects from the kvstore"));
    }
    return absl::UnavailableError(absl::StrCat(
        "shared store ", config_.prefix, ": watch ended before the initial list was received"));
  }

  void Close(const Context& ctx) override {
    Stop();
    while (true) {
      std::string name;
      {
        MutexLock lock(mu_);
        // A write in flight may be about to make its key local; that key must go as well.
        ctx.WaitOn(lock, turn_cv_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !local_keys_.empty() || keys_in_flight_.empty();
        });
        if (local_keys_.empty()) break;
        name = local_keys_.begin()->first;
      }
      std::shared_ptr<const LocalKey> key;
      absl::Status status;
      {
        // Without the turn (ctx done while another call wrote the key) the key is forgotten and
        // reported all the same, as when the delete itself fails.
        absl::StatusOr<KeyTurn> turn = TakeTurn(ctx, name);
        {
          MutexLock guard(mu_);
          auto it = local_keys_.find(name);
          if (it == local_keys_.end()) continue;  // DeleteLocalKey was first
          key = std::move(it->second);
          local_keys_.erase(it);
          // The watch is stopped, so our own delete event will never remove the shared entry.
          shared_keys_.erase(name);
        }
        status = turn.ok() ? backend_->Delete(ctx, KeyPath(name)) : turn.status();
      }
      if (!status.ok()) {
        spdlog::warn("shared store {}: unable to delete key {} in kvstore: {}", config_.prefix,
                     name, status.ToString());
      }
      NotifyDelete(*key);
    }
  }

  void Release() override { Stop(); }

  void DeleteLocalKey(const Context& ctx, const NamedKey& key) override {
    const std::string name = key.GetKeyName();
    bool was_local;
    std::shared_ptr<const Key> swallowed;  // shared entry whose delete event was already seen
    absl::Status status;
    {
      // Without the turn (ctx done while another call wrote the key) the key is forgotten and
      // reported all the same, as when the delete itself fails.
      absl::StatusOr<KeyTurn> turn = TakeTurn(ctx, name);
      {
        MutexLock guard(mu_);
        was_local = local_keys_.erase(name) > 0;
        if (awaiting_recreate_.erase(name) > 0) {
          // The kvstore lost this key and its delete event was held back to re-create it; no
          // other delete event will come, so the shared entry goes now.
          recreate_requests_.erase(name);
          if (auto it = shared_keys_.find(name); it != shared_keys_.end()) {
            swallowed = std::move(it->second);
            shared_keys_.erase(it);
          }
        }
      }
      status = turn.ok() ? backend_->Delete(ctx, KeyPath(name)) : turn.status();
    }
    if (!was_local) return;
    if (!status.ok()) {
      spdlog::warn("shared store {}: unable to delete key {} in kvstore: {}", config_.prefix, name,
                   status.ToString());
    }
    NotifyDelete(key);
    // The watch reports the delete as well (a second OnDelete, as in Cilium); when the watch had
    // reported it already, that report is delivered here.
    if (swallowed != nullptr) NotifyDelete(*swallowed);
  }

  int NumEntries() const override {
    MutexLock guard(mu_);
    return static_cast<int>(shared_keys_.size());
  }

  std::map<std::string, std::shared_ptr<const Key>> SharedKeysMap() const override {
    MutexLock guard(mu_);
    return std::map<std::string, std::shared_ptr<const Key>>(shared_keys_.begin(),
                                                             shared_keys_.end());
  }

  absl::Status UpdateKeySync(const Context& ctx, const LocalKey& key, bool lease) override {
    absl::StatusOr<KeyTurn> turn = TakeTurn(ctx, key.GetKeyName());
    if (!turn.ok()) return turn.status();
    return WriteKey(ctx, key, lease);
  }

  absl::Status UpdateLocalKeySync(const Context& ctx, const LocalKey& key) override {
    std::shared_ptr<const LocalKey> copy = key.DeepKeyCopy();
    if (copy == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("DeepKeyCopy of key ", key.GetKeyName(), " returned no key"));
    }
    const std::string name = copy->GetKeyName();
    absl::StatusOr<KeyTurn> turn = TakeTurn(ctx, name);
    if (!turn.ok()) return turn.status();
    absl::Status status = WriteKey(ctx, *copy, /*lease=*/true);
    if (!status.ok()) return status;
    // Still within the turn: a delete of the key issued after this write finds it local.
    MutexLock guard(mu_);
    local_keys_[name] = std::move(copy);
    return absl::OkStatus();
  }

 private:
  // The right to call the backend for one key: writes and deletes of a key reach the backend in
  // the order their callers took turns, so that a periodic sync never writes back a key that
  // DeleteLocalKey removed or an older value of one just updated. No mutex is held during the
  // call; a turn for one key never waits for another key. Given back when destroyed.
  class [[nodiscard]] KeyTurn {
   public:
    KeyTurn(SharedStoreImpl* store, std::string name) : store_(store), name_(std::move(name)) {}
    KeyTurn(KeyTurn&& other) noexcept
        : store_(std::exchange(other.store_, nullptr)), name_(std::move(other.name_)) {}
    KeyTurn& operator=(KeyTurn&&) = delete;
    KeyTurn(const KeyTurn&) = delete;
    KeyTurn& operator=(const KeyTurn&) = delete;
    ~KeyTurn() {
      if (store_ != nullptr) store_->GiveBackTurn(name_);
    }

   private:
    SharedStoreImpl* store_;  // null once moved from
    std::string name_;
  };

  // Waits until no other call is writing or deleting `name`, then takes the turn. The error of
  // `ctx` when it is done first.
  absl::StatusOr<KeyTurn> TakeTurn(const Context& ctx, const std::string& name) {
    MutexLock lock(mu_);
    if (!ctx.WaitOn(lock, turn_cv_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !keys_in_flight_.contains(name);
        })) {
      return ctx.Err();
    }
    keys_in_flight_.insert(name);
    return KeyTurn(this, name);
  }

  void GiveBackTurn(const std::string& name) {
    MutexLock guard(mu_);
    keys_in_flight_.erase(name);
    turn_cv_.notify_all();
  }

  // A shared key deleted from the kvstore whose OnDelete waits for the delete delay.
  struct PendingDelete {
    SteadyTime due;
    std::shared_ptr<const Key> key;
  };

  // WARNING - stable API: the layout of a key's path is shared with Cilium agents.
  std::string KeyPath(std::string_view name) const { return JoinPath(config_.prefix, name); }

  // Writes `key` unless the kvstore already holds the same value (on our lease when `lease`).
  // REQUIRES: the caller holds the key's turn.
  absl::Status WriteKey(const Context& ctx, const Key& key, bool lease) {
    if (absl::Status name_ok = CheckKeyName(key.GetKeyName()); !name_ok.ok()) return name_ok;
    absl::StatusOr<std::string> value = key.Marshal();
    if (!value.ok()) return value.status();
    absl::StatusOr<bool> written =
        backend_->UpdateIfDifferent(ctx, KeyPath(key.GetKeyName()), *value, lease);
    return written.status();
  }

  // Requests a stop (idempotent) and waits until the watch and sync tasks ended, unless called
  // by an observer the watch task is delivering to (an observer calling Release): the owner's
  // destructor waits then.
  void Stop() {
    CancelFunc poke_sync;
    {
      MutexLock guard(mu_);
      stopping_ = true;
      poke_sync = sync_poke_;
      cv_.notify_all();
    }
    cancel_();
    if (poke_sync) poke_sync();
    if (watcher_ != nullptr) watcher_->Stop();
    if (delivery_thread_.load() == std::this_thread::get_id()) return;
    MutexLock lock(mu_);
    cv_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !watch_running_ && !sync_running_;
    });
  }

  bool Stopping() const {
    MutexLock guard(mu_);
    return stopping_;
  }

  void NotifyUpdate(const Key& key) {
    if (config_.observer == nullptr) return;
    std::lock_guard<std::recursive_mutex> guard(observer_mu_);
    config_.observer->OnUpdate(key);
  }

  void NotifyDelete(const NamedKey& key) {
    if (config_.observer == nullptr) return;
    std::lock_guard<std::recursive_mutex> guard(observer_mu_);
    config_.observer->OnDelete(key);
  }

  // An observer call the watch task owes, in stream order.
  struct Notification {
    bool update;  // OnUpdate, else OnDelete
    std::shared_ptr<const Key> key;
  };

  // The store's watch task, on strand_: applies watch events and collects delayed deletes, one at
  // a time in one order, and hands the observer calls they make to Deliver. It holds no thread
  // while it waits for events; while deletes are pending, the wait also ends when the clock
  // reaches the first due time (a context with that deadline on the store's clock).
  Task<void> WatchLoop() {
    Context alarm_ctx;
    std::optional<SteadyTime> armed_for;  // the due time alarm_ctx is armed for
    // Every event received by the time the task wakes up, taken at once: under a burst of writes
    // it wakes once per batch, not once per event, and hands the observer the batch at once.
    std::deque<KeyValueEvent> batch;
    std::vector<Notification> owed;
    while (!Stopping() && !ctx_.Done()) {
      bool received;
      if (pending_by_due_.empty()) {
        received = co_await kvstore::internal::NextEvents(strand_, *watcher_, ctx_, &batch);
      } else {
        const SteadyTime now = clock_->Now();
        const SteadyTime due = pending_by_due_.begin()->first;
        if (due <= now) {
          DeliverDueDeletes(now, &owed);
          co_await Deliver(&owed);
          continue;
        }
        // Re-armed when the first due time changed, and when the alarm went off although the
        // clock is not there (a fake clock set back), so that a done context never spins.
        if (armed_for != due || alarm_ctx.Done()) {
          alarm_ctx = WithDeadline(ctx_, due, clock_).first;
          armed_for = due;
        }
        received = co_await kvstore::internal::NextEvents(strand_, *watcher_, alarm_ctx, &batch);
      }
      if (received) {
        for (; !batch.empty() && !Stopping(); batch.pop_front()) {
          // Deletes falling due meanwhile come first, as if the events were taken one by one.
          if (!pending_by_due_.empty()) {
            const SteadyTime now = clock_->Now();
            if (pending_by_due_.begin()->first <= now) DeliverDueDeletes(now, &owed);
          }
          if (batch.front().type == EventType::kListDone) {
            // Join returns once the observer has had every key of the initial list.
            co_await Deliver(&owed);
            SetListDone();
            continue;
          }
          HandleEvent(batch.front(), &owed);
        }
        batch.clear();
        co_await Deliver(&owed);
      } else if (ctx_.Done() || internal::WatcherProducer(*watcher_).Closed() ||
                 internal::WatcherProducer(*watcher_).Stopped()) {
        break;
      }
    }
  }

  // Calls the observer for each of `*owed`, in order, and empties it; stops early once the store
  // stops. The observer may block (SPEC: on a thread of the store's own), so the calls run on
  // the callback pool, which gives a call that blocks for long a thread of its own: it delays
  // this store only (or on the configured executor, whose observers must not block for long).
  // The watch task waits meanwhile without holding a thread.
  Task<void> Deliver(std::vector<Notification>* owed) {
    if (owed->empty()) co_return;
    if (config_.observer == nullptr) {
      owed->clear();
      co_return;
    }
    co_await kvstore::internal::Offload(observer_pool_, strand_, [this, owed] {
      delivery_thread_.store(std::this_thread::get_id());
      for (const Notification& n : *owed) {
        if (Stopping()) break;
        // An observer call that throws is logged and counted, and the store goes on with the
        // next: the exception would otherwise end the watch task, and the store would stop
        // following the kvstore without a word.
        kvstore::internal::RunGuarded("a SharedStore observer", [this, &n] {
          if (n.update) {
            NotifyUpdate(*n.key);
          } else {
            NotifyDelete(*n.key);
          }
        });
      }
      delivery_thread_.store(std::thread::id());
      return true;
    });
    owed->clear();
  }

  void SetListDone() {
    spdlog::debug("shared store {}: initial list of objects received", config_.prefix);
    MutexLock guard(mu_);
    list_done_ = true;
    cv_.notify_all();
  }

  // Applies one event other than kListDone; the observer calls it makes go to `*owed`.
  void HandleEvent(const KeyValueEvent& event, std::vector<Notification>* owed) {
    if (!event.key.starts_with(watch_prefix_)) {
      spdlog::warn("shared store {}: ignoring event for foreign key {}", config_.prefix, event.key);
      return;
    }
    const std::string name = event.key.substr(watch_prefix_.size());
    switch (event.type) {
      case EventType::kCreate:
      case EventType::kModify:
        UpdateSharedKey(name, event.value, owed);
        return;
      case EventType::kDelete:
        DeleteSharedKey(name, owed);
        return;
      case EventType::kListDone:
        return;
    }
  }

  void UpdateSharedKey(const std::string& name, const std::string& value,
                       std::vector<Notification>* owed) {
    std::unique_ptr<Key> key = config_.key_creator();
    if (key == nullptr) {
      spdlog::warn("shared store {}: KeyCreator returned no key for {}", config_.prefix, name);
      return;
    }
    absl::Status status = key->Unmarshal(name, value);
    if (!status.ok()) {
      spdlog::warn("shared store {}: unable to unmarshal value of key {}: {}", config_.prefix, name,
                   status.ToString());
      return;
    }
    std::shared_ptr<const Key> shared = std::move(key);
    {
      MutexLock guard(mu_);
      shared_keys_[name] = shared;
    }
    // The key re-appeared within the delete delay: its delete is never reported.
    if (auto it = pending_deletes_.find(name); it != pending_deletes_.end()) {
      spdlog::info("shared store {}: key {} re-appeared within the delete delay", config_.prefix,
                   name);
      pending_by_due_.erase({it->second.due, name});
      pending_deletes_.erase(it);
    }
    owed->push_back({true, std::move(shared)});
  }

  void DeleteSharedKey(const std::string& name, std::vector<Notification>* owed) {
    std::shared_ptr<const Key> existing;
    bool recreate = false;
    CancelFunc poke_sync;
    {
      MutexLock guard(mu_);
      if (local_keys_.contains(name)) {
        // An agent protects its own keys: the sync task writes it again.
        spdlog::warn("shared store {}: local key {} was deleted, re-creating it", config_.prefix,
                     name);
        recreate_requests_.insert(name);
        awaiting_recreate_.insert(name);
        recreate = true;
        poke_sync = sync_poke_;
      } else {
        auto it = shared_keys_.find(name);
        if (it == shared_keys_.end()) {
          spdlog::debug("shared store {}: deleted key {} was not known", config_.prefix, name);
          return;
        }
        existing = std::move(it->second);
        shared_keys_.erase(it);
      }
    }
    if (recreate) {
      if (poke_sync) poke_sync();  // the sync task re-creates the key
      return;
    }
    if (delete_delay_.count() == 0) {
      owed->push_back({false, std::move(existing)});
      return;
    }
    SteadyTime due = clock_->Now() + delete_delay_;
    if (auto it = pending_deletes_.find(name); it != pending_deletes_.end()) {
      pending_by_due_.erase({it->second.due, name});
    }
    pending_deletes_[name] = PendingDelete{due, std::move(existing)};
    pending_by_due_.emplace(due, name);
  }

  void DeliverDueDeletes(SteadyTime now, std::vector<Notification>* owed) {
    while (!pending_by_due_.empty() && pending_by_due_.begin()->first <= now) {
      std::string name = pending_by_due_.begin()->second;
      pending_by_due_.erase(pending_by_due_.begin());
      auto it = pending_deletes_.find(name);
      std::shared_ptr<const Key> key = std::move(it->second.key);
      pending_deletes_.erase(it);
      owed->push_back({false, std::move(key)});
    }
  }

  // What the sync task waits on until the next sync: a context done at `next_sync` on the
  // store's clock, or earlier by its cancel (sync_poke_: a local key to re-create, or Stop).
  struct SyncWait {
    Context ctx;
    CancelFunc poke;
  };

  // A wait until `next_sync`, ended early through sync_poke_. Made before SyncLoop looks at
  // recreate_requests_, so that a request added after that look ends the wait that follows.
  SyncWait NewSyncWait(SteadyTime next_sync) {
    auto [ctx, poke] = WithDeadline(ctx_, next_sync, clock_);
    MutexLock guard(mu_);
    sync_poke_ = poke;
    return SyncWait{ctx, poke};
  }

  // The store's sync task, on strand_: re-creates deleted local keys at once and re-writes every
  // local key each synchronization interval. The writes run on the blocking pool, apart from the
  // watch task, so that a backend write never waits for the consumer of its own watch events.
  Task<void> SyncLoop(SteadyTime next_sync, SyncWait wait) {
    while (true) {
      std::optional<std::set<std::string>> names;  // nullopt: every local key
      bool work = false;
      {
        MutexLock guard(mu_);
        if (stopping_ || ctx_done_ || ctx_.Done()) break;
        if (!recreate_requests_.empty()) {
          names = std::move(recreate_requests_);
          recreate_requests_.clear();
          work = true;
        } else if (clock_->Now() >= next_sync) {
          work = true;
        }
      }
      if (!work) {
        co_await kvstore::internal::UntilDone(strand_, wait.ctx);
        if (!Stopping() && clock_->Now() < next_sync) {
          // Poked for a re-create (or a fake clock set back): a fresh wait for the same time.
          wait = NewSyncWait(next_sync);
        }
        continue;
      }
      const bool full = !names.has_value();
      co_await kvstore::internal::Offload(write_pool_, strand_, [&] {
        SyncLocalKeys(names);
        return true;
      });
      if (full) {
        next_sync = clock_->Now() + sync_interval_;
        wait = NewSyncWait(next_sync);
      }
    }
    MutexLock guard(mu_);
    sync_poke_ = nullptr;
  }

  // Writes the local keys named in `names` (all when nullopt) unless the kvstore holds them
  // already. A failure is logged; the next round retries.
  void SyncLocalKeys(const std::optional<std::set<std::string>>& names) {
    std::vector<std::string> todo;
    {
      MutexLock guard(mu_);
      for (const auto& [name, key] : local_keys_) {
        if (!names.has_value() || names->contains(name)) todo.push_back(name);
      }
    }
    for (const std::string& name : todo) {
      absl::StatusOr<KeyTurn> turn = TakeTurn(ctx_, name);
      if (!turn.ok()) return;  // the store stops
      std::shared_ptr<const LocalKey> key;
      {
        // Re-read within the turn: a key deleted or replaced meanwhile must not be written back.
        MutexLock guard(mu_);
        auto it = local_keys_.find(name);
        if (it == local_keys_.end()) continue;
        key = it->second;
      }
      absl::Status status = WriteKey(ctx_, *key, /*lease=*/true);
      if (status.ok()) {
        MutexLock guard(mu_);
        awaiting_recreate_.erase(name);  // its create event follows
      } else if (!ctx_.Done()) {
        spdlog::warn("shared store {}: unable to synchronize local key {}: {}", config_.prefix,
                     name, status.ToString());
      }
    }
  }

  const Configuration config_;
  const std::shared_ptr<Backend> backend_;
  const std::shared_ptr<Clock> clock_;  // never null
  const std::string watch_prefix_;
  const std::chrono::milliseconds sync_interval_;
  const std::chrono::milliseconds delete_delay_;
  Context ctx_;  // ends the watch, the sync task and their backend calls
  CancelFunc cancel_;
  std::shared_ptr<Watcher> watcher_;  // set by Start before the tasks exist, then constant

  // Runs the watch and sync tasks, one step at a time, on the library's executor (or the
  // configured one).
  Strand strand_{config_.executor};
  // Where the sync task's backend writes and the observer calls run: the library's blocking pool
  // and pool for callbacks, or the configured executor.
  Executor& write_pool_ =
      config_.executor != nullptr ? *config_.executor : kvstore::internal::BlockingPool();
  Executor& observer_pool_ =
      config_.executor != nullptr ? *config_.executor : kvstore::internal::CallbackPool();
  // The thread running a Deliver's observer calls, or none: Stop must not wait for the watch
  // task from there.
  std::atomic<std::thread::id> delivery_thread_;

  // One observer call at a time, also between the watch task and DeleteLocalKey/Close callers.
  // Recursive: an observer may call DeleteLocalKey, which reports to the observer.
  std::recursive_mutex observer_mu_;

  mutable Mutex mu_;  // guards the fields below
  CondVar cv_;        // signals changes of the flags and of recreate_requests_
  CondVar turn_cv_;   // signals turns given back (keys_in_flight_ shrinking)
  bool list_done_ ABSL_GUARDED_BY(mu_) = false;
  bool watch_ended_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool ctx_done_ ABSL_GUARDED_BY(mu_) = false;  // ctx_ is done (set by ctx_wakeup_)
  // The watch task, the sync task was spawned and has not finished.
  bool watch_running_ ABSL_GUARDED_BY(mu_) = false;
  bool sync_running_ ABSL_GUARDED_BY(mu_) = false;
  // Ends the sync task's current wait (null once the task ended).
  CancelFunc sync_poke_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const LocalKey>> local_keys_ ABSL_GUARDED_BY(mu_);
  // Hashed: every watch event of every collaborator looks its key up here, and ordered lookups
  // were a measurable part of a store's CPU (SharedKeysMap sorts on demand). Open addressing: a
  // lookup touches one group of slots instead of a bucket and a chain of nodes.
  absl::flat_hash_map<std::string, std::shared_ptr<const Key>> shared_keys_ ABSL_GUARDED_BY(mu_);
  // Deleted local keys for the sync task to write.
  std::set<std::string> recreate_requests_ ABSL_GUARDED_BY(mu_);
  // Local keys deleted in the kvstore and not written again yet: their delete events were
  // swallowed, so their shared entries stay until the re-create or until DeleteLocalKey.
  std::set<std::string> awaiting_recreate_ ABSL_GUARDED_BY(mu_);
  // Names whose turn is taken: a backend write or delete of the key is in flight (KeyTurn).
  absl::flat_hash_set<std::string> keys_in_flight_ ABSL_GUARDED_BY(mu_);

  // Used by the watch task only.
  std::map<std::string, PendingDelete> pending_deletes_;
  std::set<std::pair<SteadyTime, std::string>> pending_by_due_;

  // Sets ctx_done_. Last member: unregistered before mu_ and cv_ go away.
  std::optional<ScopedContextCallback> ctx_wakeup_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SharedStore>> SharedStore::Join(Configuration c) {
  if (c.prefix.empty()) return absl::InvalidArgumentError("prefix must be specified");
  if (!c.key_creator) return absl::InvalidArgumentError("KeyCreator must be specified");
  std::shared_ptr<Backend> backend = c.backend != nullptr ? c.backend : DefaultClient();
  if (backend == nullptr) {
    return absl::FailedPreconditionError("no backend given and no default kvstore client");
  }
  auto store = std::make_unique<SharedStoreImpl>(std::move(c), std::move(backend));
  absl::Status status = store->Start();
  if (!status.ok()) return status;
  return std::unique_ptr<SharedStore>(std::move(store));
}

absl::StatusOr<std::unique_ptr<SharedStore>> JoinSharedStore(Configuration c) {
  return SharedStore::Join(std::move(c));
}

}  // namespace kvstore::store

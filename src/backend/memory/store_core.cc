#include "backend/memory/store_core.h"

#include <algorithm>
#include <system_error>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "core/relist_diff.h"
#include "core/thread_reaper.h"
#include "core/watcher_producer.h"

namespace kvstore::memory::internal {
namespace {

// Bookkeeping cost of a history entry beyond its keys and values.
constexpr size_t kHistoryEntryOverheadBytes = 64;
// Every so many commits the history no watcher needs any more is dropped.
constexpr size_t kTrimIntervalCommits = 256;
// Longest sleep of the maintenance thread when no lease is counting down (a FakeClock's Advance
// and every change of lease deadlines wake it anyway).
constexpr auto kIdleWait = std::chrono::hours(1);

}  // namespace

// ---- StoreCore: lifecycle ----

StoreCore::StoreCore(InMemoryOptions opts)
    : opts_(std::move(opts)),
      clock_(opts_.clock ? opts_.clock : SystemClock()),
      lease_gauge_(opts_.metrics.get()) {}

StoreCore::~StoreCore() = default;

void StoreCore::Start() {
  maintenance_thread_ = std::thread([self = shared_from_this()] { self->MaintenanceLoop(); });
}

void StoreCore::Shutdown() {
  std::vector<CancelFunc> cancels;
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) return;
    shutdown_ = true;
    for (auto& [id, watch] : watches_) {
      cancels.push_back(watch->cancel);
      watch->cv.notify_all();
      if (watch->thread.joinable()) threads.push_back(std::move(watch->thread));
    }
    maintenance_cv_.notify_all();
  }
  // Cancelling runs context callbacks that take mu_, hence outside it.
  for (const CancelFunc& cancel : cancels) cancel();
  if (maintenance_thread_.joinable()) threads.push_back(std::move(maintenance_thread_));
  for (std::thread& thread : threads) {
    // The last reference to the store may be dropped by an observer running on one of our own
    // threads; that thread holds the core alive, sees shutdown_ as soon as it returns here and
    // ends; the reaper joins it.
    if (thread.get_id() == std::this_thread::get_id()) {
      kvstore::internal::ThreadReaper::Instance().Adopt(std::move(thread));
    } else {
      thread.join();
    }
  }
}

void StoreCore::MaintenanceLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutdown_) {
    std::vector<std::thread> finished = TakeFinishedWatchThreadsLocked();
    if (!finished.empty()) {
      lock.unlock();
      for (std::thread& thread : finished) thread.join();
      lock.lock();
      continue;
    }
    const Clock::time_point now = clock_->Now();
    std::vector<LostKeys> lost;
    const Clock::time_point next = RevokeDueLeasesLocked(now, now + kIdleWait, lost);
    if (!lost.empty()) {
      lock.unlock();
      Report(std::move(lost));
      lock.lock();
      continue;
    }
    clock_->WaitUntil(lock, maintenance_cv_, next);
  }
}

std::vector<std::thread> StoreCore::TakeFinishedWatchThreadsLocked() {
  std::vector<std::thread> threads;
  for (uint64_t id : finished_watches_) {
    auto it = watches_.find(id);
    if (it == watches_.end()) continue;
    if (it->second->thread.joinable()) threads.push_back(std::move(it->second->thread));
    watches_.erase(it);
  }
  finished_watches_.clear();
  return threads;
}

// ---- Sessions and leases ----

uint64_t StoreCore::OpenSession(std::string name, std::shared_ptr<LeaseObservers> observers) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_session_id_++;
  Session& session = sessions_[id];
  session.name = std::move(name);
  session.observers = std::move(observers);
  return id;
}

void StoreCore::CloseSession(uint64_t session_id) {
  std::vector<CancelFunc> cancels;
  std::shared_ptr<LeaseObservers> observers;  // released without mu_ held
  const Clock::time_point expiry = clock_->Now() + opts_.lease_ttl;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end() || !it->second.kept_alive) return;
    Session& session = it->second;
    session.kept_alive = false;
    observers = std::move(session.observers);
    // The last keep-alive happened just now: the leases run out one TTL later.
    for (int64_t lease_id : session.lease_ids) leases_.at(lease_id).expiry = expiry;
    lease_gauge_.Remove(static_cast<double>(session.lease_ids.size()));
    for (auto& [id, watch] : watches_) {
      if (watch->session_id == session_id && !watch->finished) cancels.push_back(watch->cancel);
    }
    MaybeForgetSessionLocked(session_id);
    maintenance_cv_.notify_all();
  }
  for (const CancelFunc& cancel : cancels) cancel();
}

void StoreCore::ExpireSession(uint64_t session_id) {
  std::vector<LostKeys> lost;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return;
    const std::vector<int64_t> lease_ids = it->second.lease_ids;
    for (int64_t lease_id : lease_ids) RevokeLeaseLocked(lease_id, lost);
    MaybeForgetSessionLocked(session_id);
    maintenance_cv_.notify_all();
  }
  Report(std::move(lost));
}

void StoreCore::ExpireDueLeases() {
  const Clock::time_point now = clock_->Now();
  std::vector<LostKeys> lost;
  {
    std::lock_guard<std::mutex> lock(mu_);
    RevokeDueLeasesLocked(now, now, lost);
  }
  Report(std::move(lost));
}

Clock::time_point StoreCore::RevokeDueLeasesLocked(Clock::time_point now,
                                                   Clock::time_point idle_deadline,
                                                   std::vector<LostKeys>& lost) {
  Clock::time_point next = idle_deadline;
  std::vector<int64_t> due;
  for (const auto& [id, lease] : leases_) {
    if (sessions_.at(lease.session_id).kept_alive) continue;
    if (lease.expiry <= now) {
      due.push_back(id);
    } else {
      next = std::min(next, lease.expiry);
    }
  }
  for (int64_t lease_id : due) {
    const uint64_t session_id = leases_.at(lease_id).session_id;
    RevokeLeaseLocked(lease_id, lost);
    MaybeForgetSessionLocked(session_id);
  }
  return next;
}

void StoreCore::RevokeLeaseLocked(int64_t lease_id, std::vector<LostKeys>& lost) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  Lease lease = std::move(it->second);
  leases_.erase(it);
  Session& session = sessions_.at(lease.session_id);
  std::erase(session.lease_ids, lease_id);
  if (session.kept_alive) lease_gauge_.Remove(1);

  std::vector<Change> changes;
  std::vector<std::string> keys;
  for (const std::string& key : lease.keys) {
    auto key_it = keys_.find(key);
    if (key_it == keys_.end() || key_it->second.lease_id != lease_id) continue;
    changes.push_back(Change{key, key_it->second.value, /*deleted=*/true});
    keys_.erase(key_it);
    keys.push_back(key);
  }
  // Like etcd, a revoked lease deletes all its keys in one revision.
  if (!changes.empty()) CommitLocked(std::move(changes));
  if (session.observers && !keys.empty()) {
    lost.push_back(LostKeys{session.observers, std::move(keys)});
  }
}

void StoreCore::MaybeForgetSessionLocked(uint64_t session_id) {
  auto it = sessions_.find(session_id);
  if (it != sessions_.end() && !it->second.kept_alive && it->second.lease_ids.empty()) {
    sessions_.erase(it);
  }
}

void StoreCore::Report(std::vector<LostKeys> lost) {
  for (LostKeys& entry : lost) entry.observers->Dispatch(entry.keys);
}

bool StoreCore::LeaseOfSessionLocked(uint64_t session_id, int64_t lease_id) const {
  auto it = leases_.find(lease_id);
  return it != leases_.end() && it->second.session_id == session_id;
}

int64_t StoreCore::LeaseForWriteLocked(uint64_t session_id, Session& session,
                                       std::string_view key) {
  auto key_it = keys_.find(key);
  if (key_it != keys_.end() && LeaseOfSessionLocked(session_id, key_it->second.lease_id)) {
    return key_it->second.lease_id;
  }
  const size_t max_keys = std::max<size_t>(1, opts_.max_keys_per_lease);
  if (!session.lease_ids.empty()) {
    const Lease& newest = leases_.at(session.lease_ids.back());
    if (newest.keys.size() < max_keys) return newest.id;
  }
  const int64_t id = next_lease_id_++;
  Lease& lease = leases_[id];
  lease.id = id;
  lease.session_id = session_id;
  session.lease_ids.push_back(id);
  lease_gauge_.Add(1);
  return id;
}

void StoreCore::DetachLocked(std::string_view key, int64_t lease_id) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  auto key_it = it->second.keys.find(key);
  if (key_it != it->second.keys.end()) it->second.keys.erase(key_it);
}

// ---- Key space ----

std::optional<std::string> StoreCore::Get(std::string_view key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  return *it->second.value;
}

KeyValuePairs StoreCore::ListPrefix(std::string_view prefix) const {
  std::vector<std::pair<std::string, KeyRecord>> snapshot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot = SnapshotLocked(prefix);
  }
  // Values are copied out without the lock: the snapshot shares them.
  KeyValuePairs pairs;
  for (auto& [key, record] : snapshot) {
    pairs.emplace_hint(pairs.end(), std::move(key),
                       Value{*record.value, record.mod_revision, record.lease_id});
  }
  return pairs;
}

std::vector<std::pair<std::string, KeyRecord>> StoreCore::SnapshotLocked(
    std::string_view prefix) const {
  std::vector<std::pair<std::string, KeyRecord>> snapshot;
  for (auto it = keys_.lower_bound(prefix); it != keys_.end() && it->first.starts_with(prefix);
       ++it) {
    snapshot.emplace_back(it->first, it->second);
  }
  return snapshot;
}

absl::StatusOr<bool> StoreCore::Put(uint64_t session_id, std::string_view key,
                                    std::string_view value, bool lease, PutMode mode) {
  std::lock_guard<std::mutex> lock(mu_);
  auto session_it = sessions_.find(session_id);
  if (session_it == sessions_.end() || !session_it->second.kept_alive) {
    return absl::FailedPreconditionError("in-memory client is closed");
  }
  Session& session = session_it->second;
  auto key_it = keys_.find(key);
  if (key_it != keys_.end()) {
    const KeyRecord& current = key_it->second;
    if (mode == PutMode::kCreateOnly) return false;
    if (mode == PutMode::kIfDifferent && *current.value == value &&
        (!lease || LeaseOfSessionLocked(session_id, current.lease_id))) {
      return false;
    }
  }
  const int64_t lease_id = lease ? LeaseForWriteLocked(session_id, session, key) : 0;
  const int64_t revision = revision_ + 1;
  auto shared_value = std::make_shared<const std::string>(value);
  if (key_it == keys_.end()) {
    key_it = keys_.emplace(std::string(key), KeyRecord{}).first;
    key_it->second.create_revision = revision;
  } else if (key_it->second.lease_id != 0 && key_it->second.lease_id != lease_id) {
    DetachLocked(key, key_it->second.lease_id);
  }
  KeyRecord& record = key_it->second;
  record.value = shared_value;
  record.mod_revision = revision;
  ++record.version;
  record.lease_id = lease_id;
  if (lease_id != 0) leases_.at(lease_id).keys.emplace(key);
  std::vector<Change> changes;
  changes.push_back(Change{std::string(key), std::move(shared_value), /*deleted=*/false});
  CommitLocked(std::move(changes));
  return true;
}

void StoreCore::Delete(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  if (it->second.lease_id != 0) DetachLocked(key, it->second.lease_id);
  std::vector<Change> changes;
  changes.push_back(Change{it->first, it->second.value, /*deleted=*/true});
  keys_.erase(it);
  CommitLocked(std::move(changes));
}

void StoreCore::DeletePrefix(std::string_view prefix) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Change> changes;
  auto it = keys_.lower_bound(prefix);
  while (it != keys_.end() && it->first.starts_with(prefix)) {
    if (it->second.lease_id != 0) DetachLocked(it->first, it->second.lease_id);
    changes.push_back(Change{it->first, it->second.value, /*deleted=*/true});
    it = keys_.erase(it);
  }
  if (!changes.empty()) CommitLocked(std::move(changes));
}

// ---- History ----

void StoreCore::CommitLocked(std::vector<Change> changes) {
  const int64_t revision = ++revision_;
  HistoryEntry entry;
  entry.revision = revision;
  entry.bytes = kHistoryEntryOverheadBytes;
  for (const Change& change : changes) entry.bytes += change.key.size() + change.value->size();
  entry.changes = std::move(changes);

  for (auto& [id, watch] : watches_) {
    if (watch->finished) continue;
    const bool matches = std::any_of(
        entry.changes.begin(), entry.changes.end(),
        [&prefix = watch->prefix](const Change& change) { return change.key.starts_with(prefix); });
    if (matches) {
      watch->cv.notify_all();
    } else if (watch->next_revision == revision) {
      // A caught-up watcher skips revisions it does not care about, so that it never holds on
      // to history it will not use.
      watch->next_revision = revision + 1;
    }
  }
  history_bytes_ += entry.bytes;
  history_.push_back(std::move(entry));
  TrimHistoryLocked();
}

void StoreCore::TrimHistoryLocked() {
  auto drop_front = [this] {
    compacted_revision_ = history_.front().revision;
    history_bytes_ -= history_.front().bytes;
    history_.pop_front();
  };
  while (!history_.empty() &&
         (history_.size() > opts_.max_history_revisions || history_bytes_ > kMaxHistoryBytes)) {
    drop_front();
  }
  if (++commits_since_trim_ < kTrimIntervalCommits) return;
  commits_since_trim_ = 0;
  int64_t needed = revision_ + 1;
  for (const auto& [id, watch] : watches_) {
    if (!watch->finished) needed = std::min(needed, watch->next_revision);
  }
  while (!history_.empty() && history_.front().revision < needed) drop_front();
}

void StoreCore::Compact(int64_t revision) {
  std::lock_guard<std::mutex> lock(mu_);
  CompactLocked(revision);
}

void StoreCore::CompactLocked(int64_t revision) {
  if (revision <= 0 || revision > revision_) revision = revision_;
  while (!history_.empty() && history_.front().revision <= revision) {
    history_bytes_ -= history_.front().bytes;
    history_.pop_front();
  }
  compacted_revision_ = std::max(compacted_revision_, revision);
}

int64_t StoreCore::Revision() const {
  std::lock_guard<std::mutex> lock(mu_);
  return revision_;
}

std::string StoreCore::StatusLine(uint64_t session_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t leases = 0;
  if (auto it = sessions_.find(session_id); it != sessions_.end()) {
    leases = it->second.lease_ids.size();
  }
  return absl::StrCat("in-memory store: ", keys_.size(), keys_.size() == 1 ? " key" : " keys",
                      ", revision ", revision_, ", ", leases, leases == 1 ? " lease" : " leases");
}

// ---- Watches ----

std::shared_ptr<Watcher> StoreCore::ListAndWatch(uint64_t session_id, const Context& ctx,
                                                 std::string_view prefix, size_t capacity) {
  auto watcher = std::make_shared<Watcher>(std::string(prefix), capacity);
  if (ctx.Done()) {
    watcher->Close();
    return watcher;
  }
  auto [watch_ctx, cancel] = WithCancel(ctx);
  kvstore::internal::WatcherProducer(*watcher).SetStopHook(cancel);

  std::vector<std::thread> finished;
  bool started = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto session_it = sessions_.find(session_id);
    if (!shutdown_ && session_it != sessions_.end() && session_it->second.kept_alive) {
      auto watch = std::make_unique<Watch>();
      watch->id = next_watch_id_++;
      watch->session_id = session_id;
      watch->prefix = std::string(prefix);
      watch->watcher = watcher;
      watch->ctx = watch_ctx;
      watch->cancel = cancel;
      watch->next_revision = revision_ + 1;
      watch->queue_metrics = kvstore::internal::EventsQueueRecorder(opts_.metrics.get(), prefix);
      Watch* raw = watch.get();
      try {
        raw->thread =
            std::thread([self = shared_from_this(), raw, snapshot = SnapshotLocked(prefix),
                         revision = revision_]() mutable {
              self->RunWatch(raw, std::move(snapshot), revision);
            });
        watches_.emplace(raw->id, std::move(watch));
        started = true;
      } catch (const std::system_error&) {
        // Out of threads: the watcher closes at once, as if its context were done.
      }
    }
    finished = TakeFinishedWatchThreadsLocked();
  }
  for (std::thread& thread : finished) thread.join();
  if (!started) {
    cancel();
    watcher->Close();
  }
  return watcher;
}

void StoreCore::RunWatch(Watch* watch, std::vector<std::pair<std::string, KeyRecord>> initial,
                         int64_t list_revision) {
  Watcher& watcher = *watch->watcher;
  const Context& ctx = watch->ctx;
  // Emit blocks until the consumer takes the event, so it refuses only when the watch ends.
  auto emit = [watch](KeyValueEvent& event) { return Emit(watch, std::move(event)); };
  kvstore::internal::KnownKeys known(watch->prefix);
  // The first listing is the difference to an empty view: a kCreate per key.
  bool ok = ListInto(known, initial, list_revision, emit);
  initial = {};
  if (ok) ok = Emit(watch, KeyValueEvent{EventType::kListDone, "", "", list_revision});

  while (ok) {
    std::vector<std::pair<int64_t, Change>> batch;
    std::vector<std::pair<std::string, KeyRecord>> snapshot;
    bool relist = false;
    int64_t relist_revision = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ctx.WaitOn(lock, watch->cv, [&] { return shutdown_ || watch->next_revision <= revision_; });
      if (shutdown_ || ctx.Done()) break;
      if (watch->next_revision <= compacted_revision_) {
        // The revisions this watcher still needs are gone: compare with the present instead.
        relist = true;
        relist_revision = revision_;
        snapshot = SnapshotLocked(watch->prefix);
        watch->next_revision = revision_ + 1;
      } else {
        size_t index = static_cast<size_t>(watch->next_revision - compacted_revision_ - 1);
        size_t scanned = 0;
        while (index < history_.size() && scanned < kMaxWatchBatchRevisions &&
               batch.size() < kMaxWatchBatchEvents) {
          const HistoryEntry& entry = history_[index];
          for (const Change& change : entry.changes) {
            if (change.key.starts_with(watch->prefix)) batch.emplace_back(entry.revision, change);
          }
          ++index;
          ++scanned;
        }
        watch->next_revision = compacted_revision_ + 1 + static_cast<int64_t>(index);
      }
    }
    if (relist) {
      ok = ListInto(known, snapshot, relist_revision, emit);
      continue;
    }
    for (auto& [revision, change] : batch) {
      ok = change.deleted ? known.ApplyDelete(change.key, revision, emit)
                          : known.ApplyPut(change.key, revision, std::move(change.value), emit);
      if (!ok) break;
    }
  }

  watcher.Close();
  std::lock_guard<std::mutex> lock(mu_);
  watch->finished = true;
  finished_watches_.push_back(watch->id);
  maintenance_cv_.notify_all();
}

bool StoreCore::ListInto(kvstore::internal::KnownKeys& known,
                         const std::vector<std::pair<std::string, KeyRecord>>& snapshot,
                         int64_t revision, kvstore::internal::EmitFn emit) {
  kvstore::internal::RelistDiff diff(known, revision);
  for (const auto& [key, record] : snapshot) {
    if (!diff.Listed(key, record.mod_revision, record.value, emit)) return false;
  }
  return diff.Finish(emit);
}

bool StoreCore::Emit(Watch* watch, KeyValueEvent event) {
  const EventType type = event.type;
  const auto received = watch->queue_metrics.Received();
  if (!watch->watcher->Emit(std::move(event), watch->ctx)) return false;
  watch->queue_metrics.Accepted(type, received);
  return true;
}

}  // namespace kvstore::memory::internal

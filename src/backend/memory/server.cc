#include "backend/memory/server.h"

#include <algorithm>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "kvstore/mutex.h"

namespace kvstore::memory::internal {
namespace {

// Every so many commits the history no watcher needs any more is dropped.
constexpr size_t kTrimIntervalCommits = 256;

}  // namespace

// ---- InMemoryServer: lifecycle ----

InMemoryServer::InMemoryServer(InMemoryOptions opts)
    : opts_(std::move(opts)),
      clock_(opts_.clock ? opts_.clock : SystemClock()),
      executor_(opts_.executor ? opts_.executor : DefaultExecutor()),
      lease_gauge_(opts_.metrics.get()),
      history_(opts_.max_history_revisions, kMaxHistoryBytes) {}

InMemoryServer::~InMemoryServer() = default;

void InMemoryServer::Shutdown() {
  std::vector<std::shared_ptr<Watch>> watches;
  Timer lease_timer;
  {
    MutexLock lock(mu_);
    if (shutdown_) return;
    shutdown_ = true;
    for (auto& [id, watch] : watches_) watches.push_back(watch);
    lease_timer = lease_timer_;
    lease_timer_at_.reset();
  }
  lease_timer.Stop();
  {
    WriterMutexLock gate(metrics_mu_);
    metrics_off_ = true;
  }
  // Each watcher closes now; its pump, woken by the cancel, finds the server shut down and
  // forgets the watch. Cancelling runs context callbacks that take mu_, hence outside it.
  for (const std::shared_ptr<Watch>& watch : watches) {
    watch->watcher->Close();
    watch->cancel();
  }
}

// ---- Key space ----

std::optional<std::string> InMemoryServer::Get(std::string_view key) const {
  MutexLock lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  return *it->second.value;
}

KeyValuePairs InMemoryServer::ListPrefix(std::string_view prefix) const {
  std::vector<std::pair<std::string, KeyRecord>> snapshot;
  {
    MutexLock lock(mu_);
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

std::vector<std::pair<std::string, KeyRecord>> InMemoryServer::SnapshotLocked(
    std::string_view prefix) const {
  std::vector<std::pair<std::string, KeyRecord>> snapshot;
  for (auto it = keys_.lower_bound(prefix); it != keys_.end() && it->first.starts_with(prefix);
       ++it) {
    snapshot.emplace_back(it->first, it->second);
  }
  return snapshot;
}

absl::StatusOr<bool> InMemoryServer::Put(uint64_t session_id, std::string_view key,
                                         std::string_view value, bool lease, PutMode mode) {
  MutexLock lock(mu_);
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
  if (lease_id != 0 && !leases_.contains(lease_id)) {
    return absl::NotFoundError("requested lease not found");
  }
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

void InMemoryServer::Delete(std::string_view key) {
  MutexLock lock(mu_);
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  if (it->second.lease_id != 0) DetachLocked(key, it->second.lease_id);
  std::vector<Change> changes;
  changes.push_back(Change{it->first, it->second.value, /*deleted=*/true});
  keys_.erase(it);
  CommitLocked(std::move(changes));
}

void InMemoryServer::DeletePrefix(std::string_view prefix) {
  MutexLock lock(mu_);
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

void InMemoryServer::CommitLocked(std::vector<Change> changes) {
  const int64_t revision = ++revision_;
  for (auto& [id, watch] : watches_) {
    if (watch->finished) continue;
    const bool matches = std::any_of(
        changes.begin(), changes.end(),
        [&prefix = watch->prefix](const Change& change) { return change.key.starts_with(prefix); });
    if (matches) {
      if (watch->parked) {
        watch->parked = false;
        WakeWatch(watch);
      }
    } else if (watch->next_revision == revision) {
      // A caught-up watcher skips revisions it does not care about, so that it never holds on
      // to history it will not use.
      watch->next_revision = revision + 1;
    }
  }
  history_.Append(revision, std::move(changes));
  if (++commits_since_trim_ < kTrimIntervalCommits) return;
  commits_since_trim_ = 0;
  int64_t needed = revision_ + 1;
  for (const auto& [id, watch] : watches_) {
    if (!watch->finished) needed = std::min(needed, watch->next_revision);
  }
  history_.DropBefore(needed);
}

void InMemoryServer::Compact(int64_t revision) {
  MutexLock lock(mu_);
  CompactLocked(revision);
}

void InMemoryServer::CompactLocked(int64_t revision) {
  if (revision <= 0 || revision > revision_) revision = revision_;
  history_.CompactThrough(revision);
}

int64_t InMemoryServer::Revision() const {
  MutexLock lock(mu_);
  return revision_;
}

std::string InMemoryServer::StatusLine(uint64_t session_id) const {
  MutexLock lock(mu_);
  size_t leases = 0;
  if (auto it = sessions_.find(session_id); it != sessions_.end()) {
    leases = it->second.lease_ids.size();
  }
  return absl::StrCat("in-memory store: ", keys_.size(), keys_.size() == 1 ? " key" : " keys",
                      ", revision ", revision_, ", ", leases, leases == 1 ? " lease" : " leases");
}

}  // namespace kvstore::memory::internal

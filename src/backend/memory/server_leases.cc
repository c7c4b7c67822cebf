// The in-memory server's sessions and leases: granting, keep-alive by session, expiry and
// revocation.
#include <utility>

#include "backend/memory/server.h"
#include "core/planted_bugs.h"
#include "kvstore/mutex.h"

namespace kvstore::memory::internal {

uint64_t InMemoryServer::OpenSession(std::string name, std::shared_ptr<LeaseObservers> observers) {
  MutexLock lock(mu_);
  const uint64_t id = next_session_id_++;
  Session& session = sessions_[id];
  session.name = std::move(name);
  session.observers = std::move(observers);
  return id;
}

void InMemoryServer::CloseSession(uint64_t session_id) {
  std::vector<CancelFunc> cancels;
  std::shared_ptr<LeaseObservers> observers;  // released without mu_ held
  const Clock::time_point expiry = clock_->Now() + opts_.lease_ttl;
  {
    MutexLock lock(mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end() || !it->second.kept_alive) return;
    Session& session = it->second;
    session.kept_alive = false;
    observers = std::move(session.observers);
    // The last keep-alive happened just now: the leases run out one TTL later.
    for (int64_t lease_id : session.lease_ids) {
      if (auto lease = leases_.find(lease_id); lease != leases_.end())
        lease->second.expiry = expiry;
    }
    lease_gauge_.Remove(static_cast<double>(session.lease_ids.size()));
    for (auto& [id, watch] : watches_) {
      if (watch->session_id == session_id && !watch->finished) cancels.push_back(watch->cancel);
    }
    MaybeForgetSessionLocked(session_id);
    ArmLeaseTimerLocked();
  }
  for (const CancelFunc& cancel : cancels) cancel();
}

void InMemoryServer::ExpireSession(uint64_t session_id) {
  std::vector<LostKeys> lost;
  {
    MutexLock lock(mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return;
    const std::vector<int64_t> lease_ids = it->second.lease_ids;
    for (int64_t lease_id : lease_ids) RevokeLeaseLocked(lease_id, lost);
    MaybeForgetSessionLocked(session_id);
    ArmLeaseTimerLocked();
  }
  Report(std::move(lost));
}

void InMemoryServer::ExpireDueLeases() {
  const Clock::time_point now = clock_->Now();
  std::vector<LostKeys> lost;
  {
    MutexLock lock(mu_);
    RevokeDueLeasesLocked(now, now, lost);
    ArmLeaseTimerLocked();
  }
  Report(std::move(lost));
}

void InMemoryServer::ArmLeaseTimerLocked() {
  if (shutdown_) return;
  std::optional<Clock::time_point> next;
  for (const auto& [id, lease] : leases_) {
    if (sessions_.at(lease.session_id).kept_alive) continue;
    if (!next || lease.expiry < *next) next = lease.expiry;
  }
  if (next == lease_timer_at_) return;
  lease_timer_.Stop();
  lease_timer_at_ = next;
  if (!next) return;
  // The timer only hands over: leases expire and observers run on the executor.
  std::weak_ptr<InMemoryServer> weak = weak_from_this();
  lease_timer_ = clock_->AfterFunc(*next - clock_->Now(), [weak, executor = executor_] {
    executor->Post([weak] {
      auto self = weak.lock();
      if (!self) return;
      {
        MutexLock lock(self->mu_);
        self->lease_timer_at_.reset();
      }
      self->ExpireDueLeases();
    });
  });
}

Clock::time_point InMemoryServer::RevokeDueLeasesLocked(Clock::time_point now,
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

void InMemoryServer::RevokeLeaseLocked(int64_t lease_id, std::vector<LostKeys>& lost) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  Lease lease = std::move(it->second);
  leases_.erase(it);
  Session& session = sessions_.at(lease.session_id);
  if (!kvstore::internal::Planted(kvstore::internal::PlantedBug::kReuseExpiredLease)) {
    std::erase(session.lease_ids, lease_id);
  }
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

void InMemoryServer::MaybeForgetSessionLocked(uint64_t session_id) {
  auto it = sessions_.find(session_id);
  if (it != sessions_.end() && !it->second.kept_alive && it->second.lease_ids.empty()) {
    sessions_.erase(it);
  }
}

void InMemoryServer::Report(std::vector<LostKeys> lost) {
  for (LostKeys& entry : lost) entry.observers->Dispatch(entry.keys);
}

bool InMemoryServer::LeaseOfSessionLocked(uint64_t session_id, int64_t lease_id) const {
  auto it = leases_.find(lease_id);
  return it != leases_.end() && it->second.session_id == session_id;
}

int64_t InMemoryServer::LeaseForWriteLocked(uint64_t session_id, Session& session,
                                            std::string_view key) {
  auto key_it = keys_.find(key);
  if (key_it != keys_.end() && LeaseOfSessionLocked(session_id, key_it->second.lease_id)) {
    return key_it->second.lease_id;
  }
  const size_t max_keys = std::max<size_t>(1, opts_.max_keys_per_lease);
  if (!session.lease_ids.empty()) {
    if (kvstore::internal::Planted(kvstore::internal::PlantedBug::kReuseExpiredLease) &&
        !leases_.contains(session.lease_ids.back())) {
      return session.lease_ids.back();  // revoked: the write that uses it fails
    }
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

void InMemoryServer::DetachLocked(std::string_view key, int64_t lease_id) {
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  auto key_it = it->second.keys.find(key);
  if (key_it != it->second.keys.end()) it->second.keys.erase(key_it);
}

}  // namespace kvstore::memory::internal

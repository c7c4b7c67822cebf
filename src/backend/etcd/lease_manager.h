// The session leases of one backend instance: which key is attached to which lease, granting
// (one grant in flight at a time, at most max_keys_per_lease keys per lease), keep-alives over one
// LeaseKeepAlive stream at a third of the TTL, and the lease-expired observers called with each
// key of a lease that was lost. Its timer (the keep-alive tick) runs on the executor, so it
// follows the executor's clock.
#ifndef KVSTORE_BACKEND_ETCD_LEASE_MANAGER_H_
#define KVSTORE_BACKEND_ETCD_LEASE_MANAGER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "backend/etcd/executor.h"
#include "backend/etcd/transport.h"
#include "core/lease_observers.h"
#include "kvstore/context.h"
#include "kvstore/mutex.h"
#include "metrics/recorders.h"

namespace kvstore::etcd {

class LeaseManager : public std::enable_shared_from_this<LeaseManager> {
 public:
  using Observer = std::function<void(std::string_view key)>;

  // `metrics` (may be null; must outlive this) counts the leases held in cilium_kvstore_leases.
  LeaseManager(Transport* transport, Executor* executor, std::chrono::seconds ttl,
               size_t max_keys_per_lease, BackendMetrics* metrics = nullptr);
  LeaseManager(const LeaseManager&) = delete;
  LeaseManager& operator=(const LeaseManager&) = delete;

  // The lease `key` is attached to; otherwise attaches it to the current session lease, granting
  // a new one when there is none or it is full.
  absl::StatusOr<int64_t> LeaseForKey(const Context& ctx, std::string_view key);
  // LeaseForKey when it needs no grant (nor a wait for one): never blocks; nullopt when a lease
  // must be granted first, or once shut down.
  std::optional<int64_t> TryLeaseForKey(std::string_view key);
  // The lease `key` is attached to, 0 if none.
  int64_t LeaseOfKey(std::string_view key) const;
  // Detaches `key` (written without lease, or deleted): its lease no longer reports it when lost.
  void DetachKey(std::string_view key);
  // Detaches every key starting with `prefix` (deleted by prefix).
  void DetachPrefix(std::string_view prefix);

  // Forgets lease `id` (expired, revoked, not found) and calls the observers matching each key
  // that was attached to it, on this manager's own observer thread: a slow observer delays other
  // observers, never watch events or keep-alives. The next leased write gets a new lease.
  void OnLeaseLost(int64_t id, std::string_view reason);

  // One observer per prefix (kvstore::internal::LeaseObservers::Register: matched by bytes; a
  // null `fn` removes it, waiting for a running call of it unless called from one).
  void SetObserver(std::string_view prefix, Observer fn);

  size_t NumLeases() const;
  std::vector<int64_t> LeaseIds() const;

  // Stops keep-alives and fails pending grants. Revokes nothing.
  void Shutdown();

 private:
  struct LeaseInfo {
    int64_t ttl_seconds = 0;
    std::set<std::string, std::less<>> keys;
  };

  void ScheduleKeepAliveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KeepAliveTick();
  void OnKeepAliveResponse(int64_t id, int64_t ttl);
  void OnKeepAliveDone(uint64_t generation, const absl::Status& status);
  void DetachLocked(std::string_view key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lease `key` is attached to, else attaches it to the current lease if it has room.
  std::optional<int64_t> AttachLocked(std::string_view key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Transport* const transport_;
  Executor* const executor_;
  const std::chrono::seconds ttl_;
  const size_t max_keys_per_lease_;
  const kvstore::internal::LeaseGauge lease_gauge_;  // leases_ while not shut down

  mutable Mutex mu_;  // guards everything below
  CondVar cv_;
  std::map<int64_t, LeaseInfo> leases_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t, std::less<>> key_lease_ ABSL_GUARDED_BY(mu_);
  int64_t current_ ABSL_GUARDED_BY(mu_) = 0;  // 0: the next leased write grants a lease
  bool granting_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<KeepAliveRequests> stream_ ABSL_GUARDED_BY(mu_);
  uint64_t stream_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool tick_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  // When keep-alives were last written on stream_, and when any answer last came (on the
  // executor's clock): a stream that has not answered by the next tick is replaced.
  Clock::time_point last_write_ ABSL_GUARDED_BY(mu_){};
  Clock::time_point last_answer_ ABSL_GUARDED_BY(mu_){};

  kvstore::internal::LeaseObservers observers_;
  // Runs the observers one at a time (a strand), apart from the tasks that deliver watch events.
  Executor observer_thread_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_LEASE_MANAGER_H_

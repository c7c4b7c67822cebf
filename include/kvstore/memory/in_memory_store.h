// The embedded in-memory store: an etcd-like server in this process, with revisions, leases driven
// by a clock, watch fan-out and many clients, each with its own session like a separate etcd
// client.
#ifndef KVSTORE_MEMORY_IN_MEMORY_STORE_H_
#define KVSTORE_MEMORY_IN_MEMORY_STORE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "kvstore/export.h"

namespace kvstore {
class BackendMetrics;  // kvstore/backend_metrics.h; a store::Metrics is one
}  // namespace kvstore

namespace kvstore::memory {

struct KVSTORE_EXPORT InMemoryOptions {
  // How long a lease outlives the last keep-alive of its session. A client keeps its leases alive
  // until it is closed or destroyed; then they run out after this long on `clock`.
  std::chrono::seconds lease_ttl{15 * 60};
  std::shared_ptr<Clock> clock = nullptr;  // null: real time
  size_t max_keys_per_lease = 1000;
  // Revisions of history kept for watchers whose consumer lags behind; a watcher that falls
  // further behind (or behind a Compact) re-lists transparently instead of replaying.
  size_t max_history_revisions = 100000;
  // When set, every client records its operations, watch event queue times and leases here
  // (cilium_kvstore_operations_duration_seconds, _events_queue_seconds, _leases).
  std::shared_ptr<BackendMetrics> metrics = nullptr;
  // Runs the watches' deliveries and the lease-expired observers. Null: DefaultExecutor().
  std::shared_ptr<Executor> executor = nullptr;
};

// The store lives as long as the handle returned by Create or any of its clients. It owns no
// thread: leases expire on a timer of the clock, and each watch is a strand of tasks on the
// executor that never blocks (so a slow consumer never delays writers or other watchers). When
// the store goes away every watcher is closed. Thread-safe.
class KVSTORE_EXPORT InMemoryStore : public std::enable_shared_from_this<InMemoryStore> {
 public:
  static std::shared_ptr<InMemoryStore> Create(InMemoryOptions opts = {});
  virtual ~InMemoryStore() = default;

  // A new client with its own session (leases, lease-expired observers). `name` appears in errors.
  virtual std::shared_ptr<Backend> NewClient(std::string name = "") = 0;
  // Ends the lease(s) of `client`'s session now: its leased keys are deleted (watchers see
  // deletes), its lease-expired observers fire, its next leased write gets a new lease. REQUIRES:
  // `client` was made by this store's NewClient (others are ignored). Observers run on the calling
  // thread before this returns; a closed client's observers are not called.
  virtual void ExpireSession(const Backend& client) = 0;
  // Forgets history up to `revision` (0: the current one). Watchers behind it re-list.
  virtual void Compact(int64_t revision = 0) = 0;
  virtual int64_t Revision() const = 0;
  // Expires every lease whose TTL has passed on the clock (the store also does this by itself).
  virtual void ExpireDueLeases() = 0;

 protected:
  InMemoryStore() = default;
};

}  // namespace kvstore::memory

#endif  // KVSTORE_MEMORY_IN_MEMORY_STORE_H_

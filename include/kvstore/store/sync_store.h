// SyncStore: writes keys to a backend through a rate-limited work queue, and a "synced" canary key
// once everything upserted before Synced() was written.
#ifndef KVSTORE_STORE_SYNC_STORE_H_
#define KVSTORE_STORE_SYNC_STORE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/export.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "kvstore/workqueue/rate_limiter.h"

namespace kvstore::store {

// Thread-safe. Keys may be upserted, deleted and marked synced before Run; they are written once
// Run starts.
class KVSTORE_EXPORT SyncStore {
 public:
  virtual ~SyncStore() = default;
  // Runs the workers and the lease-expired observers (for the prefix and the synced key, removed
  // again on return); blocks until `ctx` is done. Writes use `ctx`. Once Run returned, further
  // changes are no longer written. The workqueue implementation throws std::logic_error when Run
  // is called a second time.
  virtual void Run(const Context& ctx) = 0;
  // Queues a write of prefix/<name> unless the value equals the last one queued for that name;
  // changes queued but not yet written coalesce. Returns the Marshal error, if any, at once; write
  // failures are retried through the rate limiter. InvalidArgument for a name equal to the synced
  // key's path (reserved).
  virtual absl::Status UpsertKey(const Context& ctx, const Key& key) = 0;
  // Queues a delete of prefix/<name>; a no-op for a name not upserted (or already deleted).
  virtual absl::Status DeleteKey(const Context& ctx, const NamedKey& key) = 0;
  // First call only: once every key upserted before it is written, writes the synced canary
  // cilium/synced/<cluster>/<synced key> (value: the time, RFC 3339), then runs `callbacks` in
  // order on a worker thread with Run's context. Waiting for earlier keys is not a failure; a
  // failed canary write is retried like any key. A canary rewritten after its lease expired does
  // not run the callbacks again.
  virtual absl::Status Synced(const Context& ctx,
                              std::vector<std::function<void(const Context&)>> callbacks = {}) = 0;
};

struct KVSTORE_EXPORT WorkqueueSyncStoreOptions {
  unsigned workers = 1;  // keys written at once (one key never by two workers); 0 is taken as 1
  bool with_lease = true;
  std::shared_ptr<workqueue::RateLimiter<std::string>> rate_limiter;  // null: default controller
  std::string synced_key_override;                                    // empty: the prefix
  std::shared_ptr<Metrics> metrics;                                   // null: no metrics
  // Drives the retry delays and gives the synced key's timestamp (WallNow). Null: SystemClock().
  std::shared_ptr<Clock> clock;
};

// Metrics (when given) use scope GetScopeFromKey(prefix) and source_cluster `cluster_name`: the
// queue size (keys waiting, not those being written), failed writes, and initial sync completed
// {action="write"} (1 after the canary write, 0 when Run ends). A null `backend` makes every write
// fail with FailedPrecondition.
KVSTORE_EXPORT std::unique_ptr<SyncStore> NewWorkqueueSyncStore(
    std::string cluster_name, std::shared_ptr<SyncStoreBackend> backend, std::string prefix,
    WorkqueueSyncStoreOptions opts = {});

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_SYNC_STORE_H_

// The stores as coroutines: what the library's own components (the mesh) run on the executor,
// holding no thread while they wait. SPEC's blocking calls (WatchStore::Watch, SyncStore::Run)
// run these same coroutines on the caller's thread. Private to the library.
#ifndef KVSTORE_STORE_ASYNC_STORES_H_
#define KVSTORE_STORE_ASYNC_STORES_H_

#include <memory>
#include <string>

#include "core/task.h"
#include "kvstore/executor.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "kvstore/store/watch_store_manager.h"

namespace kvstore::store::internal {

using kvstore::internal::Task;

class AsyncWatchStore : public WatchStore {
 public:
  // Watch as a coroutine on `executor`: the observer and the on-sync callbacks are called there,
  // one at a time. Throws std::logic_error at once (not from the task) while a Watch or Drain
  // runs. REQUIRES: `backend` outlives the task.
  virtual Task<void> WatchAsync(Executor& executor, Context ctx, WatchStoreBackend& backend,
                                std::string prefix) = 0;
};

// NewRestartableWatchStore, with the coroutine form.
std::unique_ptr<AsyncWatchStore> NewAsyncRestartableWatchStore(
    std::string cluster_name, KeyCreator key_creator, std::shared_ptr<Observer> observer,
    RestartableWatchStoreOptions opts = {});

class AsyncSyncStore : public SyncStore {
 public:
  // Run as a coroutine on `executor`: its workers wait there for keys and hand each write to the
  // blocking pool (internal::BlockingPool, unless the factory was given another executor). Throws
  // std::logic_error at once on a second run.
  virtual Task<void> RunAsync(Executor& executor, Context ctx) = 0;
};

// NewWorkqueueSyncStore, with the coroutine form. `blocking` (null: the blocking pool) runs the
// backend writes; the simulation passes its single-threaded executor, as its in-memory backend
// never blocks. REQUIRES: `blocking` outlives the store's run.
std::unique_ptr<AsyncSyncStore> NewAsyncWorkqueueSyncStore(
    std::string cluster_name, std::shared_ptr<SyncStoreBackend> backend, std::string prefix,
    WorkqueueSyncStoreOptions opts = {}, Executor* blocking = nullptr);

class AsyncWatchStoreManager : public WatchStoreManager {
 public:
  // Run as a coroutine on `executor`: the synced keys' watch (of a sync manager) runs there, and
  // each function, once its prefix is ready, is posted to `functions` (null: the callback pool,
  // as Run does). The task returns once `ctx` is done and every started function returned.
  // Throws std::logic_error at once on a second run. REQUIRES: `functions` outlives the task.
  virtual Task<void> RunAsync(Executor& executor, Context ctx, Executor* functions = nullptr) = 0;
};

// NewWatchStoreManagerImmediate and NewWatchStoreManagerSync, with the coroutine form.
std::unique_ptr<AsyncWatchStoreManager> NewAsyncWatchStoreManagerImmediate(
    std::string cluster_name);
std::unique_ptr<AsyncWatchStoreManager> NewAsyncWatchStoreManagerSync(
    std::shared_ptr<WatchStoreBackend> backend, std::string cluster_name);

}  // namespace kvstore::store::internal

#endif  // KVSTORE_STORE_ASYNC_STORES_H_

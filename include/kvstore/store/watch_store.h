// WatchStore: a restartable list-and-watch cache that emits deletions for keys gone stale.
#ifndef KVSTORE_STORE_WATCH_STORE_H_
#define KVSTORE_STORE_WATCH_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/export.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "prometheus/gauge.h"

namespace kvstore::store {

// NumEntries and Synced may be called from any thread; Watch and Drain never run concurrently.
class KVSTORE_EXPORT WatchStore {
 public:
  virtual ~WatchStore() = default;
  // Lists and watches `prefix` (passed to ListAndWatch with exactly one trailing "/") until `ctx`
  // is done (the watcher is then stopped) or the watcher closes. The observer, called on this
  // thread, sees names relative to the prefix. Known keys are marked stale at the start; at
  // kListDone the still-stale ones get OnDelete, then the on-sync callbacks run (first kListDone
  // ever only). Values that fail to Unmarshal are logged and skipped. OnDelete of a key (here, at
  // kListDone or in Drain) is given the very Key object the key's last OnUpdate got, which the
  // store keeps until then. May be called again after it
  // returned, even for another prefix. Throws std::logic_error while another Watch or Drain runs.
  virtual void Watch(const Context& ctx, WatchStoreBackend& backend, std::string_view prefix) = 0;
  virtual uint64_t NumEntries() const = 0;
  // True between kListDone and the end of this Watch.
  virtual bool Synced() const = 0;
  // OnDelete for every known key. Throws std::logic_error while watching.
  virtual void Drain() = 0;
};

struct KVSTORE_EXPORT RestartableWatchStoreOptions {
  std::vector<std::function<void(const Context&)>> on_sync_callbacks;  // run with Watch's ctx
  prometheus::Gauge* entries_metric = nullptr;  // set to NumEntries(); must outlive the store
  // cilium_kvstore_initial_sync_completed{scope of the prefix, cluster, action="read"}: 1 between
  // kListDone and the end of Watch.
  std::shared_ptr<Metrics> metrics;
};

KVSTORE_EXPORT std::unique_ptr<WatchStore> NewRestartableWatchStore(
    std::string cluster_name, KeyCreator key_creator, std::shared_ptr<Observer> observer,
    RestartableWatchStoreOptions opts = {});

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_WATCH_STORE_H_

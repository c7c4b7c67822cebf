// WatchStoreManager: starts functions when their prefix is synced (or at once).
#ifndef KVSTORE_STORE_WATCH_STORE_MANAGER_H_
#define KVSTORE_STORE_WATCH_STORE_MANAGER_H_

#include <functional>
#include <memory>
#include <string>

#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/export.h"

namespace kvstore::store {

using WSMFunc = std::function<void(const Context&)>;

class KVSTORE_EXPORT WatchStoreManager {
 public:
  virtual ~WatchStoreManager() = default;
  // Registers `fn` for `prefix` (replacing an earlier one). Throws std::logic_error once Run
  // started.
  virtual void Register(std::string prefix, WSMFunc fn) = 0;
  // Starts each registered function (at most once) on its own thread with `ctx`; blocks until
  // `ctx` is done and every started function returned. A second Run throws std::logic_error.
  virtual void Run(const Context& ctx) = 0;
};

// Starts every registered function at Run.
KVSTORE_EXPORT std::unique_ptr<WatchStoreManager> NewWatchStoreManagerImmediate(
    std::string cluster_name);
// Watches cilium/synced/<cluster_name>/ (one ListAndWatch) and starts a prefix's function when
// the synced key whose name relative to that directory is the prefix appears; synced keys of
// unregistered prefixes are ignored.
KVSTORE_EXPORT std::unique_ptr<WatchStoreManager> NewWatchStoreManagerSync(
    std::shared_ptr<WatchStoreBackend> backend, std::string cluster_name);

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_WATCH_STORE_MANAGER_H_

// SharedStore: collaborators own keys under a common prefix and all see all keys through a local
// cache fed by watch events.
#ifndef KVSTORE_STORE_SHARED_STORE_H_
#define KVSTORE_STORE_SHARED_STORE_H_

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/executor.h"
#include "kvstore/export.h"
#include "kvstore/store/key.h"

namespace kvstore::store {

// Used when Configuration::synchronization_interval is 0.
inline constexpr std::chrono::minutes kDefaultSynchronizationInterval{5};
// How long Join waits for the initial list of the prefix (on Configuration::clock).
inline constexpr std::chrono::minutes kJoinListTimeout{3};

struct KVSTORE_EXPORT Configuration {
  std::string prefix;                                     // required
  std::chrono::milliseconds synchronization_interval{0};  // 0: 5 minutes
  std::chrono::milliseconds shared_key_delete_delay{0};
  KeyCreator key_creator;              // required
  std::shared_ptr<Backend> backend;    // null: kvstore::DefaultClient()
  std::shared_ptr<Observer> observer;  // optional
  Context context;                     // the store stops watching and syncing once it is done
  // Drives every timer of the store: the synchronization interval, the shared key delete delay
  // and Join's wait for the initial list.
  std::shared_ptr<Clock> clock;  // null: real time
  // Where the store's work runs: its watch and sync tasks (on a strand of it), the backend writes
  // of its periodic sync, and its observer calls (still one at a time, in stream order). Null:
  // the library's executor, with the writes on the library's blocking pool and the observer calls
  // on its pool for callbacks. When set, an observer call or a backend write that blocks holds a
  // thread of this executor: the observer must not block for long. With a ManualExecutor (and the
  // in-memory backend on it) everything runs on the thread running its tasks, for deterministic
  // tests; Join, Close, Release and the destructor wait for those tasks, so while they run on one
  // thread another must run the executor (ManualExecutor::RunOneOrWait).
  std::shared_ptr<Executor> executor;
};

// A store owns no thread: two tasks on the library's executor (a strand of DefaultExecutor(), or
// of Configuration::executor) apply watch events and re-write local keys. The observer is called
// one call at a time, in stream order (delayed deletes included), from a thread of the library's
// pool for callbacks, which gives an observer that blocks a thread of its own: it delays its own
// store only (with Configuration::executor: from that executor's threads). All
// methods are thread-safe; no mutex is held while the backend is called, and calls for different
// keys never wait for each other. REQUIRES: the store is not destroyed from inside an observer
// callback.
class KVSTORE_EXPORT SharedStore {
 public:
  // Validates `c` (InvalidArgument), lists the prefix and starts watching; returns once the
  // initial list was received: DeadlineExceeded after kJoinListTimeout, the error of
  // `c.context` once it is done, Unavailable when the watch ends first.
  static absl::StatusOr<std::unique_ptr<SharedStore>> Join(Configuration c);

  // Releases the store if neither Close nor Release was called.
  virtual ~SharedStore() = default;
  // Stops, deletes every local key from the backend and calls OnDelete for each. Idempotent.
  virtual void Close(const Context& ctx) = 0;
  // Stops watching and syncing and leaves the keys in the backend. Idempotent.
  virtual void Release() = 0;
  // Forgets the local key, deletes it in the backend, OnDelete if it was local. The watch then
  // reports the delete as well (a second OnDelete, after the delete delay, as in Cilium).
  virtual void DeleteLocalKey(const Context& ctx, const NamedKey& key) = 0;
  // The keys under the prefix as last seen through the watch (local ones included), by name.
  virtual int NumEntries() const = 0;
  virtual std::map<std::string, std::shared_ptr<const Key>> SharedKeysMap() const = 0;
  // Writes use the backend's UpdateIfDifferent: an identical value already on the wanted lease is
  // not written again.
  // Writes `key` once (not remembered as local).
  virtual absl::Status UpdateKeySync(const Context& ctx, const LocalKey& key, bool lease) = 0;
  // Writes `key` with the session lease and, on success, remembers a copy as local.
  virtual absl::Status UpdateLocalKeySync(const Context& ctx, const LocalKey& key) = 0;
};

KVSTORE_EXPORT absl::StatusOr<std::unique_ptr<SharedStore>> JoinSharedStore(Configuration c);

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_SHARED_STORE_H_

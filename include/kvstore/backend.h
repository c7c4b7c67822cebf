// The interface every key-value backend implements, and the smaller interfaces the stores need.
#ifndef KVSTORE_BACKEND_H_
#define KVSTORE_BACKEND_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/export.h"

namespace kvstore {

struct KVSTORE_EXPORT Value {
  std::string data;
  int64_t mod_revision = 0;  // positive, grows with every write
  int64_t lease_id = 0;      // 0: no lease
  bool operator==(const Value&) const = default;
};
using KeyValuePairs = std::map<std::string, Value>;

enum class BackendState { kOk, kWarning, kFailure, kClosed };

// How fresh one watch of a backend is (Backend::Watches).
struct KVSTORE_EXPORT WatchFreshness {
  std::string prefix;
  // When the watch last heard from the backend: an event, a progress notification or the end of
  // its list (this process's wall clock). nullopt until its first list completed.
  std::optional<std::chrono::system_clock::time_point> last_heard;
  uint64_t list_pages = 0;  // pages fetched by its lists, re-lists included
  // Times it was subscribed again, by reason (those of cilium_kvstore_watch_restarts_total).
  std::map<std::string, uint64_t> restarts;
  std::string stalled;  // why it cannot resume; empty while it can
};

struct KVSTORE_EXPORT BackendStatus {
  BackendState state = BackendState::kOk;
  std::string message;  // human-readable: endpoints, leader, leases
};

// Largest value (and request) a backend accepts: etcd's default request limit.
inline constexpr size_t kMaxValueBytes = 1536 * 1024;

// One write of a batch (SyncStoreBackend::ApplyBatch): an Update, or a Delete when `value` is
// nullopt. The views must stay valid for the call.
struct KVSTORE_EXPORT WriteOp {
  std::string_view key;
  std::optional<std::string_view> value;
  bool lease = false;
};

// What SyncStore needs of a backend.
class KVSTORE_EXPORT SyncStoreBackend {
 public:
  virtual ~SyncStoreBackend() = default;
  // Writes `value` at `key`; with `lease` the key is attached to this instance's session lease.
  virtual absl::Status Update(const Context& ctx, std::string_view key, std::string_view value,
                              bool lease) = 0;
  // Deletes `key`; OK when it does not exist.
  virtual absl::Status Delete(const Context& ctx, std::string_view key) = 0;
  // Calls `fn` with each leased key under `prefix` whose lease was lost. `prefix` matches by
  // bytes, as in Cilium: "a/b" also matches "a/bc"; end it with "/" to match one directory. One
  // observer per prefix; a null `fn` removes it, and once that returns the removed observer is
  // not running and never runs again (unless removed from inside a callback). Callbacks run on a
  // backend thread, one at a time, and must not block.
  virtual void RegisterLeaseExpiredObserver(std::string_view prefix,
                                            std::function<void(std::string_view key)> fn) = 0;

  // Optional batching (an addition to the interface; backends that do not override it are
  // written one key at a time). The most operations ApplyBatch should be given at once; SyncStore
  // batches only when this is above 1.
  virtual size_t MaxBatchOps() const { return 1; }
  // Applies `ops` (distinct keys) with the semantics of Update/Delete each, returning one status
  // per op in order. A backend may apply them in one request; an op that failed may or may not
  // have been written, like a failed Update. The default applies them one by one.
  virtual std::vector<absl::Status> ApplyBatch(const Context& ctx, std::span<const WriteOp> ops) {
    std::vector<absl::Status> results;
    results.reserve(ops.size());
    for (const WriteOp& op : ops) {
      results.push_back(op.value.has_value() ? Update(ctx, op.key, *op.value, op.lease)
                                             : Delete(ctx, op.key));
    }
    return results;
  }
};

// How a watch reports, for ListAndWatchWith.
struct KVSTORE_EXPORT WatchOptions {
  // False: kDelete events may come without the last value (empty), which spares the backend
  // keeping a copy of every value it reported. For consumers that look deleted keys up by name
  // in what they kept themselves (SharedStore, WatchStore).
  bool delete_values = true;
};

// What WatchStore needs of a backend.
class KVSTORE_EXPORT WatchStoreBackend {
 public:
  virtual ~WatchStoreBackend() = default;
  // Lists `prefix` (a kCreate per key, sorted), sends kListDone, then live events with no gap.
  // Re-lists transparently when the watch breaks. Ends (closes the watcher) when `ctx` is done or
  // the consumer calls Stop().
  virtual std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                                size_t capacity) = 0;
  // ListAndWatch as `options` say. The default ignores them (a backend may always send more than
  // asked for): ListAndWatch(ctx, prefix, capacity).
  virtual std::shared_ptr<Watcher> ListAndWatchWith(const Context& ctx, std::string_view prefix,
                                                    size_t capacity, const WatchOptions& options) {
    (void)options;
    return ListAndWatch(ctx, prefix, capacity);
  }
};

class KVSTORE_EXPORT Backend : public SyncStoreBackend, public WatchStoreBackend {
 public:
  // The value at `key`, or nullopt when missing.
  virtual absl::StatusOr<std::optional<std::string>> Get(const Context& ctx,
                                                         std::string_view key) = 0;
  virtual absl::StatusOr<KeyValuePairs> ListPrefix(const Context& ctx, std::string_view prefix) = 0;
  // Writes only when the key is missing, its value differs, or `lease` is set and the key is not
  // attached to this session's current lease. Returns whether it wrote.
  virtual absl::StatusOr<bool> UpdateIfDifferent(const Context& ctx, std::string_view key,
                                                 std::string_view value, bool lease) = 0;
  // Creates `key` only if it does not exist. Returns whether it created it.
  virtual absl::StatusOr<bool> CreateOnly(const Context& ctx, std::string_view key,
                                          std::string_view value, bool lease) = 0;
  virtual absl::Status DeletePrefix(const Context& ctx, std::string_view prefix) = 0;
  virtual BackendStatus Status() const = 0;
  // How fresh each open watch of this backend is (an addition to the interface). The default:
  // none told (the etcd backend tells).
  virtual std::vector<WatchFreshness> Watches() const { return {}; }
  // Stops keep-alives and watches. Revokes nothing: leased keys expire after their TTL.
  virtual void Close() = 0;

  // Asynchronous calls (an addition to the interface): the semantics of Update, Delete and Get,
  // reported to `done` instead of returned, so that one caller can keep many requests in flight.
  //  - The key and value are copied before the call returns; `ctx` may end the call early.
  //  - `done` runs exactly once: on the caller's thread before the call returns (bad input, a
  //    closed backend, a backend without asynchronous calls), or later on a backend thread. A
  //    call still in flight when the backend is closed completes with an error then.
  //  - `done` must be quick and must not block (no blocking call on a backend either), nor close
  //    or destroy the backend; it may start further asynchronous calls.
  //  - Calls are independent: two calls in flight on one key may apply in either order.
  // The defaults run the blocking call on the caller's thread and then `done`.
  using StatusCallback = std::function<void(absl::Status status)>;
  using GetCallback = std::function<void(absl::StatusOr<std::optional<std::string>> value)>;
  virtual void UpdateAsync(const Context& ctx, std::string_view key, std::string_view value,
                           bool lease, StatusCallback done) {
    done(Update(ctx, key, value, lease));
  }
  virtual void DeleteAsync(const Context& ctx, std::string_view key, StatusCallback done) {
    done(Delete(ctx, key));
  }
  virtual void GetAsync(const Context& ctx, std::string_view key, GetCallback done) {
    done(Get(ctx, key));
  }
};

// The process-wide client used when a store is given no backend: an in-memory store's client
// unless SetDefaultClient was called.
KVSTORE_EXPORT std::shared_ptr<Backend> DefaultClient();
KVSTORE_EXPORT void SetDefaultClient(std::shared_ptr<Backend> backend);

}  // namespace kvstore

#endif  // KVSTORE_BACKEND_H_

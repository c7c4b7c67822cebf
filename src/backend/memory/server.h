// The in-memory server behind an InMemoryStore: what an etcd server is to its clients. Four jobs,
// under one mutex so that every write is one revision seen alike by all of them:
//   - the key space with revisions (server.cc),
//   - the history that watchers replay (history.h, appended to by server.cc),
//   - sessions and their leases, expired by a timer of the clock (server_leases.cc),
//   - watches, each a strand of tasks on the executor, replaying the history or re-listing
//     (server_watches.cc). The server owns no thread.
// Private to src/backend/memory.
#ifndef KVSTORE_BACKEND_MEMORY_SERVER_H_
#define KVSTORE_BACKEND_MEMORY_SERVER_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backend/memory/history.h"
#include "core/lease_observers.h"
#include "core/relist_diff.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/executor.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/mutex.h"
#include "metrics/recorders.h"

namespace kvstore::memory::internal {

using kvstore::internal::LeaseObservers;

// Values (SharedValue) are immutable once written, so the key space, the history and every
// watcher's view share them instead of copying.

// A watcher takes at most this many events from the history before handing them to its consumer,
// so it holds the store lock only briefly and a compaction can overtake a slow consumer.
inline constexpr size_t kMaxWatchBatchEvents = 256;
// ...and scans at most this many revisions per batch (most may not match its prefix).
inline constexpr size_t kMaxWatchBatchRevisions = 4096;
// History beyond this many bytes is forgotten; watchers still behind it re-list.
inline constexpr size_t kMaxHistoryBytes = 256u << 20;

enum class PutMode { kAlways, kIfDifferent, kCreateOnly };

struct KeyRecord {
  SharedValue value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;  // number of writes since creation
  int64_t lease_id = 0;
};

class InMemoryServer : public std::enable_shared_from_this<InMemoryServer> {
 public:
  explicit InMemoryServer(InMemoryOptions opts);
  InMemoryServer(const InMemoryServer&) = delete;
  InMemoryServer& operator=(const InMemoryServer&) = delete;
  ~InMemoryServer();

  // Closes every watcher and stops the lease timer; tasks still queued find the server shut
  // down. Called by the owning InMemoryStore when it goes away.
  void Shutdown();

  // A new session; `observers` are called when one of its leases is lost.
  uint64_t OpenSession(std::string name, std::shared_ptr<LeaseObservers> observers);
  // Stops the keep-alive of the session (its leases now expire a TTL from now, revoking nothing),
  // ends its watches and drops its observers.
  void CloseSession(uint64_t session_id);
  // Revokes every lease of the session now; calls its observers on this thread.
  void ExpireSession(uint64_t session_id);
  // Revokes every lease whose TTL has passed; calls observers on this thread.
  void ExpireDueLeases();

  std::optional<std::string> Get(std::string_view key) const;
  KeyValuePairs ListPrefix(std::string_view prefix) const;
  // Writes `value` at `key` as `mode` allows; returns whether it wrote.
  // FailedPrecondition once the session was closed.
  absl::StatusOr<bool> Put(uint64_t session_id, std::string_view key, std::string_view value,
                           bool lease, PutMode mode);
  void Delete(std::string_view key);
  void DeletePrefix(std::string_view prefix);

  // Starts a watch of `prefix` owned by the session; the watcher is closed at once if the store is
  // shutting down.
  std::shared_ptr<Watcher> ListAndWatch(uint64_t session_id, const Context& ctx,
                                        std::string_view prefix, size_t capacity);

  void Compact(int64_t revision);
  int64_t Revision() const;
  // "in-memory store: 12 keys, revision 40, 1 lease" (the session's leases).
  std::string StatusLine(uint64_t session_id) const;
  // The session's live lease ids, oldest first (for tests and Status).

 private:
  struct Lease {
    int64_t id = 0;
    uint64_t session_id = 0;
    Clock::time_point expiry;  // meaningful only once the session stopped its keep-alive
    std::set<std::string, std::less<>> keys;
  };
  struct Session {
    std::string name;
    std::vector<int64_t> lease_ids;  // live leases, oldest first; the last one takes new keys
    bool kept_alive = true;
    std::shared_ptr<LeaseObservers> observers;  // null once closed
  };
  // One watch: a pump (Pump) run on the watch's strand hands the consumer the events it owes,
  // without blocking: when the watcher is full it asks to be woken once there is room, when it
  // is caught up it parks until a commit concerns it.
  struct Watch {
    Watch(std::string prefix, std::shared_ptr<Executor> executor)
        : prefix(prefix), strand(std::move(executor)), known(std::move(prefix)) {}
    uint64_t id = 0;
    uint64_t session_id = 0;
    const std::string prefix;
    std::shared_ptr<Watcher> watcher;
    Context ctx;  // a child of the caller's context, cancelled by Stop, Close and Shutdown
    CancelFunc cancel;
    Strand strand;  // runs Pump; what follows up to the guarded fields is the pump's alone
    kvstore::internal::KnownKeys known;
    // Events made from the history (or a listing) and not yet taken by the watcher, each with
    // when it was made, for the queue metrics.
    std::deque<std::pair<KeyValueEvent, kvstore::internal::EventsQueueRecorder::TimePoint>> pending;
    kvstore::internal::EventsQueueRecorder queue_metrics;
    uint64_t ctx_callback = 0;  // guarded by mu_: on ctx, wakes the pump
    int64_t next_revision = 0;  // guarded by mu_: the first revision not yet taken
    bool parked = false;        // guarded by mu_: caught up; a matching commit wakes the pump
    bool finished = false;      // guarded by mu_
  };
  // Keys of a lost lease, to report to their session's observers once the lock is released.
  struct LostKeys {
    std::shared_ptr<LeaseObservers> observers;
    std::vector<std::string> keys;
  };

  // Hands the watch's pending events to its watcher while it has room, then makes more from the
  // history (or a listing when the history it needs is gone), until the watch is caught up, its
  // watcher full, or the watch ended. Runs on the watch's strand.
  void Pump(const std::shared_ptr<Watch>& watch);
  // Posts Pump to the watch's strand.
  void WakeWatch(const std::shared_ptr<Watch>& watch);
  // Closes the watcher and forgets the watch. On the watch's strand.
  void FinishWatch(const std::shared_ptr<Watch>& watch);
  // Arms the lease timer for the earliest expiry of a lease no longer kept alive, unless armed
  // for it already.
  void ArmLeaseTimerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Emits the difference between what `known` holds and `snapshot` (sorted, taken at
  // `revision`) and records it in `known`; false once the watch ended.
  static bool ListInto(kvstore::internal::KnownKeys& known,
                       const std::vector<std::pair<std::string, KeyRecord>>& snapshot,
                       int64_t revision, kvstore::internal::EmitFn emit);
  static void Report(std::vector<LostKeys> lost);

  std::vector<std::pair<std::string, KeyRecord>> SnapshotLocked(std::string_view prefix) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lease a leased write of `key` by the session uses: the session's lease the key is attached
  // to, else its newest lease with room, else a new one.
  int64_t LeaseForWriteLocked(uint64_t session_id, Session& session, std::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool LeaseOfSessionLocked(uint64_t session_id, int64_t lease_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DetachLocked(std::string_view key, int64_t lease_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the lease and its keys (in one revision); collects what the observers must hear.
  void RevokeLeaseLocked(int64_t lease_id, std::vector<LostKeys>& lost)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets a closed session once it has no lease left.
  void MaybeForgetSessionLocked(uint64_t session_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Revokes the leases due at `now`; returns the earliest future expiry (or `idle_deadline`).
  Clock::time_point RevokeDueLeasesLocked(Clock::time_point now, Clock::time_point idle_deadline,
                                          std::vector<LostKeys>& lost)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a new revision made of `changes` and wakes the watchers it concerns.
  void CommitLocked(std::vector<Change> changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CompactLocked(int64_t revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const InMemoryOptions opts_;
  const std::shared_ptr<Clock> clock_;
  const std::shared_ptr<Executor> executor_;
  const kvstore::internal::LeaseGauge lease_gauge_;  // the leases of sessions still kept alive

  // Held shared while a pump records a queue metric, exclusively by Shutdown: once Shutdown has
  // returned no pump touches the metrics, whose registry the owner may destroy right after.
  SharedMutex metrics_mu_;
  bool metrics_off_ ABSL_GUARDED_BY(metrics_mu_) = false;

  mutable Mutex mu_;  // guards everything below
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 1;  // like etcd: an empty store is at revision 1
  std::map<std::string, KeyRecord, std::less<>> keys_ ABSL_GUARDED_BY(mu_);
  History history_ ABSL_GUARDED_BY(mu_);
  size_t commits_since_trim_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  int64_t next_lease_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Session> sessions_ ABSL_GUARDED_BY(mu_);
  uint64_t next_session_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::shared_ptr<Watch>> watches_ ABSL_GUARDED_BY(mu_);
  uint64_t next_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  Timer lease_timer_ ABSL_GUARDED_BY(mu_);  // armed for lease_timer_at_
  std::optional<Clock::time_point> lease_timer_at_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvstore::memory::internal

#endif  // KVSTORE_BACKEND_MEMORY_SERVER_H_

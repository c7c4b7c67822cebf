// One remote cluster of a Mesh: its connection, the cluster config it gets from the remote and
// keeps asserting in the target, and one watch store (remote) feeding one sync store (target) per
// mirrored prefix. The stores outlive connections: after a reconnect the watch store lists again
// and turns what vanished meanwhile into deletes, as Cilium's kvstoremesh does.
#ifndef KVSTORE_MESH_REMOTE_MIRROR_H_
#define KVSTORE_MESH_REMOTE_MIRROR_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/task.h"
#include "kvstore/context.h"
#include "kvstore/executor.h"
#include "kvstore/mesh/mesh.h"
#include "kvstore/mutex.h"
#include "mesh/mesh_metrics.h"
#include "store/async_stores.h"

namespace kvstore::mesh::internal {

// What every remote of one mesh shares. Owned by the mesh, which outlives its remotes.
struct MirrorEnv {
  const MeshOptions* options = nullptr;
  std::shared_ptr<Clock> clock;
  MeshMetrics* metrics = nullptr;
  std::function<void(const MeshEvent&)> emit;  // serialized by the mesh
  std::shared_ptr<Executor> executor;          // each remote runs on a strand of it
  Executor* blocking = nullptr;  // the backend calls (never null; MeshOptions::blocking_executor)
};

class RemoteMirror {
 public:
  RemoteMirror(RemoteCluster spec, const MirrorEnv& env);
  ~RemoteMirror();  // Stop()
  RemoteMirror(const RemoteMirror&) = delete;
  RemoteMirror& operator=(const RemoteMirror&) = delete;

  // Starts connecting, as tasks on a strand of the mesh's executor, until Stop or `parent` is
  // done. Once only.
  void Start(const Context& parent);
  // Takes `spec` (same name) and connects again with it; the stores and mirrored keys stay.
  void Reconnect(RemoteCluster spec);
  // Stops every task and waits until they all finished. Mirrored keys stay in the target.
  // Idempotent. REQUIRES: not called from a task of this remote.
  void Stop();

  RemoteClusterStatus Status() const;
  // What a drain of this cluster removes from the target (DrainPrefixes).
  std::vector<std::string> DrainPrefixes() const;
  // Whether its cluster config is written in the target (Cilium's layout).
  bool WritesClusterConfig() const;

 private:
  struct PrefixMirror;
  using Task = kvstore::internal::Task<void>;

  // Connects again and again (with back-off after a failure) until `ctx` is done; then waits for
  // the sync stores, which run with `ctx`.
  Task Loop(Context ctx);
  // One connection: open, read the cluster config, mirror until `conn` is done. An error is a
  // failure to connect (counted, retried by Loop).
  kvstore::internal::Task<absl::Status> Connect(Context ctx, Context conn, RemoteCluster spec);
  // Connect with the remote open: everything but opening and closing it.
  kvstore::internal::Task<absl::Status> Mirror(Context ctx, Context conn,
                                               std::shared_ptr<Backend> remote, RemoteCluster spec);
  // The remote's cluster config, read until found and valid or `conn` is done (each failure
  // counted).
  kvstore::internal::Task<std::optional<ClusterConfig>> ReadClusterConfig(Context conn,
                                                                          Backend& remote);
  // Writes `config` into the target at once, then again every cluster_config_refresh and
  // whenever the key is deleted or changed there, until `conn` is done.
  Task EnforceClusterConfig(Context conn, ClusterConfig config);
  // Makes a mirror for each of `layout` (keeping those that exist, with their new source), and
  // drains those no longer in it. New mirrors' sync stores run with `ctx`.
  void UpdateMirrors(const Context& ctx, const std::vector<MirroredPrefix>& layout);
  // Watches the remote for one mirror until `conn` is done, again with back-off when the watch
  // ends by itself.
  Task WatchSource(Context conn, PrefixMirror& mirror, WatchStoreBackend& remote);
  // Waits for the remote's canary of each of `mirrors` (cilium/synced/<cluster>/<source synced
  // key>) and starts watching that mirror's source once it appeared, as WatchStoreManagerSync
  // does; the watches join `tasks`.
  Task WatchCanaries(Context conn, std::vector<PrefixMirror*> mirrors, Backend& remote,
                     kvstore::internal::WaitGroup& tasks);
  // Watches the remote backend's health until `conn` is done: a failing backend counts as a
  // failure, and as disconnected until it recovers.
  Task MonitorHealth(Context conn, Backend& remote);
  // Runs a blocking call of a backend on the blocking pool (or the mesh's blocking executor),
  // resuming on this remote's strand.
  template <typename Fn>
  auto Blocking(Fn fn) {
    return kvstore::internal::Offload(*env_.blocking, strand_, std::move(fn));
  }

  // Watches the remote's cilium/.heartbeat until `conn` is done: while no write of it was seen
  // for remote_heartbeat_timeout (counted from the connection's start until the first), the
  // remote is not ready.
  Task WatchHeartbeat(Context conn, Backend& remote);
  // Records whether the heartbeat is stale now (and when a write was seen, if one was).
  void SetHeartbeat(bool stale, std::optional<std::chrono::system_clock::time_point> seen);

  void RecordFailure(const absl::Status& status);
  void SetConnected(bool connected);
  // Recomputes readiness and publishes it (metrics) when it changed.
  void UpdateReadiness();
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `mirror` may be null (not created yet). REQUIRES: mu_ is held.
  PrefixStatus StatusOf(const MirroredPrefix& prefix, const PrefixMirror* mirror) const;
  void Emit(MeshEvent::Type type, std::optional<PrefixStatus> prefix = std::nullopt,
            std::string error = "");

  const std::string name_;
  const MirrorEnv env_;

  // Guards the fields below. Only this remote's tasks (on strand_) change layout_, mirrors_ and
  // retired_, and they read them without the lock.
  mutable Mutex mu_;
  RemoteCluster spec_ ABSL_GUARDED_BY(mu_);
  CancelFunc cancel_ ABSL_GUARDED_BY(mu_);       // of Start's context
  CancelFunc cancel_conn_ ABSL_GUARDED_BY(mu_);  // of the current connection
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool heartbeat_stale_ ABSL_GUARDED_BY(mu_) =
      false;  // no heartbeat seen within remote_heartbeat_timeout
  std::optional<std::chrono::system_clock::time_point> last_heartbeat_ ABSL_GUARDED_BY(mu_);
  std::vector<WatchFreshness> watches_ ABSL_GUARDED_BY(mu_);  // as the remote's backend last told
  std::string status_text_ ABSL_GUARDED_BY(mu_) = "waiting for the initial connection";
  std::optional<ClusterConfig> config_ ABSL_GUARDED_BY(mu_);
  uint64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::optional<std::chrono::system_clock::time_point> last_failure_ ABSL_GUARDED_BY(mu_);
  std::vector<MirroredPrefix> layout_;  // mirrored by the current (or last) connection
  std::map<std::string, std::unique_ptr<PrefixMirror>> mirrors_;  // by MirroredPrefix::name
  // Mirrors whose prefix moved to another target: drained, their sync stores run to the end.
  std::vector<std::unique_ptr<PrefixMirror>> retired_;

  // Runs every task of this remote, one at a time.
  Strand strand_;
  // The sync stores' tasks (they run with Loop's context); Loop waits for them before it ends.
  kvstore::internal::WaitGroup syncs_;
  bool loop_running_ ABSL_GUARDED_BY(mu_) = false;  // Loop was started and has not finished
  CondVar loop_done_;                               // with mu_: Loop finished
};

}  // namespace kvstore::mesh::internal

#endif  // KVSTORE_MESH_REMOTE_MIRROR_H_

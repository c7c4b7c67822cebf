// One remote cluster of a Mesh: its connection, the cluster config it gets from the remote and
// keeps asserting in the target, and one watch store (remote) feeding one sync store (target) per
// mirrored prefix. The stores outlive connections: after a reconnect the watch store lists again
// and turns what vanished meanwhile into deletes, as Cilium's kvstoremesh does.
#ifndef KVSTORE_MESH_REMOTE_MIRROR_H_
#define KVSTORE_MESH_REMOTE_MIRROR_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "kvstore/context.h"
#include "kvstore/mesh/mesh.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "mesh/mesh_metrics.h"

namespace kvstore::mesh::internal {

// What every remote of one mesh shares. Owned by the mesh, which outlives its remotes.
struct MirrorEnv {
  const MeshOptions* options = nullptr;
  std::shared_ptr<Clock> clock;
  MeshMetrics* metrics = nullptr;
  std::function<void(const MeshEvent&)> emit;  // serialized by the mesh
};

class RemoteMirror {
 public:
  RemoteMirror(RemoteCluster spec, const MirrorEnv& env);
  ~RemoteMirror();  // Stop()
  RemoteMirror(const RemoteMirror&) = delete;
  RemoteMirror& operator=(const RemoteMirror&) = delete;

  // Starts connecting, on a thread of its own, until Stop or `parent` is done. Once only.
  void Start(const Context& parent);
  // Takes `spec` (same name) and connects again with it; the stores and mirrored keys stay.
  void Reconnect(RemoteCluster spec);
  // Stops every thread and joins them. Mirrored keys stay in the target. Idempotent.
  void Stop();

  RemoteClusterStatus Status() const;
  // What a drain of this cluster removes from the target (DrainPrefixes).
  std::vector<std::string> DrainPrefixes() const;
  // Whether its cluster config is written in the target (Cilium's layout).
  bool WritesClusterConfig() const;

 private:
  struct PrefixMirror;

  void Loop(const Context& ctx);
  // One connection: open, read the cluster config, mirror until `conn` is done. An error is a
  // failure to connect (counted, retried by Loop).
  absl::Status Connect(const Context& ctx, const Context& conn, const RemoteCluster& spec);
  // The remote's cluster config, read until found and valid or `conn` is done (each failure
  // counted).
  std::optional<ClusterConfig> ReadClusterConfig(const Context& conn, Backend& remote);
  // Writes `config` into the target at once, then again every cluster_config_refresh and
  // whenever the key is deleted or changed there, until `conn` is done.
  void EnforceClusterConfig(const Context& conn, const ClusterConfig& config);
  // Makes a mirror for each of `layout` (keeping those that exist, with their new source), and
  // drains those no longer in it.
  void UpdateMirrors(const Context& ctx, const std::vector<MirroredPrefix>& layout);
  // Watches the remote for one mirror until `conn` is done, again with back-off when the watch
  // ends by itself.
  void WatchSource(const Context& conn, PrefixMirror& mirror, WatchStoreBackend& remote);
  // Watches the remote backend's health until `conn` is done: a failing backend counts as a
  // failure, and as disconnected until it recovers.
  void MonitorHealth(const Context& conn, Backend& remote);

  void RecordFailure(const absl::Status& status);
  void SetConnected(bool connected);
  // Recomputes readiness and publishes it (metrics) when it changed.
  void UpdateReadiness();
  bool ReadyLocked() const;
  // `mirror` may be null (not created yet). REQUIRES: mu_ is held.
  PrefixStatus StatusOf(const MirroredPrefix& prefix, const PrefixMirror* mirror) const;
  void Emit(MeshEvent::Type type, std::optional<PrefixStatus> prefix = std::nullopt,
            std::string error = "");

  const std::string name_;
  const MirrorEnv env_;

  // Guards the fields below. Only Loop's thread changes layout_, mirrors_ and retired_, and
  // reads them without the lock.
  mutable std::mutex mu_;
  RemoteCluster spec_;
  CancelFunc cancel_;       // of Start's context
  CancelFunc cancel_conn_;  // of the current connection
  bool started_ = false;
  bool stopped_ = false;
  bool connected_ = false;
  bool ready_ = false;
  std::string status_text_ = "waiting for the initial connection";
  std::optional<ClusterConfig> config_;
  uint64_t failures_ = 0;
  std::string last_error_;
  std::optional<std::chrono::system_clock::time_point> last_failure_;
  std::vector<MirroredPrefix> layout_;  // mirrored by the current (or last) connection
  std::map<std::string, std::unique_ptr<PrefixMirror>> mirrors_;  // by MirroredPrefix::name
  // Mirrors whose prefix moved to another target: drained, their sync stores run to the end.
  std::vector<std::unique_ptr<PrefixMirror>> retired_;

  std::mutex join_mu_;  // serializes Stop's join
  std::thread thread_;  // runs Loop; set by Start, joined by Stop
};

}  // namespace kvstore::mesh::internal

#endif  // KVSTORE_MESH_REMOTE_MIRROR_H_

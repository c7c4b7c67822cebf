// Mesh: mirrors the state of any number of remote clusters into one target backend, as Cilium's
// kvstoremesh does, so that agents pointed at the target find every remote cluster's nodes,
// services, identities and IPs in the cache layout, with the clusters' configs and canaries.
#ifndef KVSTORE_MESH_MESH_H_
#define KVSTORE_MESH_MESH_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/executor.h"
#include "kvstore/export.h"
#include "kvstore/mesh/cluster_config.h"
#include "kvstore/store/metrics.h"
#include "prometheus/registry.h"

namespace kvstore::mesh {

// One mirrored prefix of a remote cluster.
struct KVSTORE_EXPORT MirroredPrefix {
  std::string name;    // short name for status and logs: "nodes", "services", ...
  std::string source;  // watched in the remote: cilium/state/nodes/v1/C
  std::string target;  // written in the target: cilium/cache/nodes/v1/C
  // The target's canary, cilium/synced/C/<synced_key>: cilium/cache/nodes/v1.
  std::string synced_key;
  // The remote's own canary to wait for (cilium/synced/C/<source_synced_key>) when the remote
  // has syncedCanaries: cilium/state/nodes/v1.
  std::string source_synced_key;
  bool operator==(const MirroredPrefix&) const = default;
};

// Cilium's layout for remote cluster `cluster` (what agents read from a kvstoremesh), by the
// remote's capabilities:
//   nodes            cilium/state/nodes/v1/C/x          -> cilium/cache/nodes/v1/C/x
//   services         cilium/state/services/v1/C/x       -> cilium/cache/services/v1/C/x
//   identities       cilium/state/identities/v1/id/x    -> cilium/cache/identities/v1/C/id/x
//   endpoints        cilium/state/ip/v1/default/x       -> cilium/cache/ip/v1/C/x
//   service-exports  cilium/state/serviceexports/v1/C/x -> cilium/cache/serviceexports/v1/C/x
//                    (only when the remote's config has serviceExportsEnabled)
// A `cached` remote is read from its own cache instead: the target prefix above (identities:
// cilium/cache/identities/v1/C/id). The target's canaries are cilium/synced/C/cilium/cache/<..>/v1;
// the remote's, waited for when it has syncedCanaries,
// cilium/synced/C/cilium/{state,cache}/<..>/v1.
KVSTORE_EXPORT std::vector<MirroredPrefix> CiliumLayout(std::string_view cluster,
                                                        const ClusterCapabilities& remote);

// What a drain removes from the target for `cluster`, in order: cilium/synced/C/, then each
// prefix's target directory. With no `prefixes`: the cache directory of every kind of Cilium's
// layout (cilium/cache/<kind>/v1/C/).
KVSTORE_EXPORT std::vector<std::string> DrainPrefixes(
    std::string_view cluster, const std::vector<MirroredPrefix>& prefixes = {});

// How one remote cluster is reached and what of it is mirrored.
struct KVSTORE_EXPORT RemoteCluster {
  // ValidateClusterName with Cilium's layout; with explicit `prefixes`, any single path element
  // without spaces or control characters.
  std::string name;
  // How to reach it: the path of a Cilium etcd config YAML (MeshOptions::open_backend opens it),
  // or, when `backend` is set, that backend as is (the mesh never closes it).
  std::string config_path;
  std::shared_ptr<Backend> backend;
  // Empty: Cilium's layout, driven by the remote's cluster config. Otherwise exactly these
  // prefixes, with no cluster config read or written.
  std::vector<MirroredPrefix> prefixes;
  // With explicit `prefixes`: mirror a prefix only once the remote's own canary exists.
  bool wait_source_synced = false;
};

struct KVSTORE_EXPORT PrefixStatus {
  std::string name, source, target;
  std::string canary;   // cilium/synced/C/<synced key>, in the target
  bool synced = false;  // the first list is mirrored and the target's canary written
  uint64_t keys = 0;    // mirrored keys known now
};

struct KVSTORE_EXPORT RemoteClusterStatus {
  std::string name;
  bool connected = false;  // the remote answers and its cluster config was read
  bool ready = false;      // connected, every prefix synced and its heartbeat fresh
  std::optional<ClusterConfig> config;
  std::vector<PrefixStatus> prefixes;
  // What the backend says of itself (BackendStatus::message), or what is being waited for.
  std::string status;
  uint64_t failures = 0;  // failed connection attempts and backend failures
  std::string last_error;
  std::optional<std::chrono::system_clock::time_point> last_failure;
  bool draining = false;  // removed: waiting for the grace period or removing its keys
  // When a write of the remote's cilium/.heartbeat was last seen (this process's wall clock).
  std::optional<std::chrono::system_clock::time_point> last_heartbeat;
  // How fresh each watch of the remote is, as its backend tells (Backend::Watches).
  std::vector<WatchFreshness> watches;
};

// What the mesh tells its user as it happens (on mesh threads; must not block for long).
struct KVSTORE_EXPORT MeshEvent {
  enum class Type {
    kConnected,     // cluster reached, config read
    kDisconnected,  // connection lost or closed for a reconnect
    kPrefixSynced,  // `prefix` mirrored, canary written
    kFailure,       // `error` says what failed; retried with back-off
    kRemoved,       // cluster removed: its config (if any) deleted in the target, drain waiting
    kDrained,       // its cache and canary prefixes removed from the target
  };
  Type type;
  std::string cluster;
  std::optional<PrefixStatus> prefix;  // kPrefixSynced
  std::string error;                   // kFailure
};

struct KVSTORE_EXPORT MeshOptions {
  // Where everything is written. Required.
  std::shared_ptr<Backend> target;
  // Opens a remote from RemoteCluster::config_path. Null: an etcd backend from the file
  // (EtcdConfig::FromFile) recording into `metrics`.
  std::function<absl::StatusOr<std::shared_ptr<Backend>>(const RemoteCluster&)> open_backend;
  // Cilium's --clustermesh-config: one file per remote cluster, named after it, holding an etcd
  // config YAML. A file counts when it is (or links to) a readable regular file containing
  // "endpoints:", as in Cilium; one named after `local_cluster_name` is ignored. Files added,
  // changed or removed add, reconnect or remove that cluster. Empty: only AddCluster.
  std::string config_directory;
  std::chrono::milliseconds config_poll_interval{1000};
  // How long a removed cluster's keys stay in the target before they are removed (Cilium: 3 min),
  // so that agents disconnect first. Removal is retried with back-off until done.
  std::chrono::milliseconds drain_grace_period{std::chrono::minutes(3)};
  // How often cilium/.heartbeat is written in the target (leased); 0: never.
  std::chrono::milliseconds heartbeat_interval{std::chrono::minutes(1)};
  // A remote cluster (Cilium's layout) whose cilium/.heartbeat was not seen written for this
  // long is reported not ready, as Cilium's agents do (its clustermesh-apiserver or operator
  // writes it every minute); counted from the connection until the first write. 0: not checked.
  std::chrono::milliseconds remote_heartbeat_timeout{std::chrono::minutes(2)};
  // How often each remote's cluster config is written again in the target (besides at once when
  // it is deleted or changed there). Cilium: 5 min.
  std::chrono::milliseconds cluster_config_refresh{std::chrono::minutes(5)};
  // Mirrored keys, canaries and cluster configs are leased to the target's session, as with
  // kvstoremesh: they expire a lease TTL after the mesh is gone. False: they stay.
  bool lease = true;
  // The cluster the target belongs to: the source_cluster label of the mesh's metrics.
  std::string local_cluster_name;
  // Store metrics (cilium_kvstore_*) for the stores the mesh runs, and the registry for the
  // mesh's own gauges <metrics_namespace>_remote_clusters{source_cluster,source_node_name} and
  // <metrics_namespace>_remote_cluster_{failures,last_failure_ts,readiness_status}{...,
  // target_cluster}. Either may be null.
  std::shared_ptr<store::Metrics> metrics;
  prometheus::Registry* registry = nullptr;
  // Cilium's agents use cilium_clustermesh, its kvstoremesh cilium_kvstoremesh.
  std::string metrics_namespace = "cilium_clustermesh";
  // Told as things happen, on mesh threads, one call at a time; must not block for long or call
  // AddCluster/RemoveCluster.
  std::function<void(const MeshEvent&)> on_event;
  std::shared_ptr<Clock> clock;  // null: SystemClock()
  // Where every remote cluster's work runs, each on a strand of its own, so that the mesh's
  // threads do not grow with its clusters. Null: DefaultExecutor().
  std::shared_ptr<Executor> executor;
  // Where the mesh's blocking backend calls run (opening remotes, reading and writing cluster
  // configs, the mirrored writes, the heartbeat, the drains' deletes). Null: the library's pool
  // for blocking calls, which grows while calls block. When set, a call that blocks (an
  // unreachable etcd) holds a thread of this executor. A test passes the ManualExecutor it gives
  // `executor`, with in-memory backends on it: the mesh then runs entirely on the thread running
  // that executor's tasks (Run, RemoveCluster, and AddCluster replacing a drain still wait for
  // those tasks, so another thread must run them meanwhile).
  std::shared_ptr<Executor> blocking_executor;
};

class KVSTORE_EXPORT Mesh {
 public:
  // InvalidArgument without a target, with a config_directory that is not a directory, a bad
  // local_cluster_name or a negative (or, for polls and refreshes, zero) interval.
  static absl::StatusOr<std::unique_ptr<Mesh>> New(MeshOptions options);
  virtual ~Mesh() = default;

  // Runs until `ctx` is done: every cluster added (before or during Run), the config directory,
  // the heartbeat and drains. On return every cluster's threads have stopped; mirrored keys stay
  // in the target. Call once.
  virtual void Run(const Context& ctx) = 0;

  // Adds a remote cluster, or replaces one of the same name (reconnecting it; its stores and
  // mirrored keys are kept; a prefix whose target changed is drained and mirrored anew). A
  // cluster being drained is no longer drained. InvalidArgument for a bad name, or prefixes that
  // share a name, target or source canary; FailedPrecondition once Run returned.
  // AddCluster and RemoveCluster may be called from any thread, but must have returned before
  // the mesh is destroyed.
  virtual absl::Status AddCluster(RemoteCluster cluster) = 0;
  // Disconnects `name`, deletes its cluster config from the target at once, and after the grace
  // period removes its prefixes (retrying until done or the mesh stops). NotFound if unknown.
  // A drain cut short by the mesh stopping leaves the keys to their lease (MeshOptions::lease).
  virtual absl::Status RemoveCluster(std::string_view name) = 0;

  // Every known cluster, draining ones included, by name.
  virtual std::vector<RemoteClusterStatus> Status() const = 0;
};

}  // namespace kvstore::mesh

#endif  // KVSTORE_MESH_MESH_H_

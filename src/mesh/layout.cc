// Where kvstoremesh reads each kind of a remote cluster's state and where agents expect it in the
// target. The key layout is stable API: it is composed here only.
#include <string>
#include <vector>

#include "kvstore/mesh/mesh.h"
#include "kvstore/paths.h"

namespace kvstore::mesh {
namespace {

struct Kind {
  const char* name;
  const char* state_prefix;  // under cilium/state
  // What follows the prefix in the source, before the keys: "<cluster>" for the kinds whose
  // state is kept per cluster; a fixed directory for the others.
  const char* state_below;
  const char* target_below;  // what follows <cache prefix>/<cluster> in the target
};

// An empty state_below: the cluster's name. Names as in Cilium's status (the ipcache is
// "endpoints").
constexpr Kind kKinds[] = {
    {"nodes", "cilium/state/nodes/v1", "", ""},
    {"services", "cilium/state/services/v1", "", ""},
    {"identities", "cilium/state/identities/v1", "id", "id"},
    {"endpoints", "cilium/state/ip/v1", "default", ""},
    {"service-exports", "cilium/state/serviceexports/v1", "", ""},
};
constexpr std::string_view kServiceExports = "service-exports";

}  // namespace

std::vector<MirroredPrefix> CiliumLayout(std::string_view cluster,
                                         const ClusterCapabilities& remote) {
  std::vector<MirroredPrefix> layout;
  for (const Kind& kind : kKinds) {
    // Remotes older than Cilium 1.17 export no MCS-API service exports, and say so by leaving
    // serviceExportsEnabled out.
    if (kind.name == kServiceExports && !remote.service_exports_enabled.has_value()) continue;
    const std::string cache = StateToCachePrefix(kind.state_prefix);
    MirroredPrefix prefix;
    prefix.name = kind.name;
    prefix.synced_key = cache;
    prefix.target = JoinPath(cache, cluster);
    if (*kind.target_below != '\0') prefix.target = JoinPath(prefix.target, kind.target_below);
    if (remote.cached) {
      // A cached remote holds its own state where the target will: in its cache, per cluster.
      prefix.source = prefix.target;
      prefix.source_synced_key = cache;
    } else {
      prefix.source =
          JoinPath(kind.state_prefix, *kind.state_below == '\0' ? cluster : kind.state_below);
      prefix.source_synced_key = kind.state_prefix;
    }
    layout.push_back(std::move(prefix));
  }
  return layout;
}

std::vector<std::string> DrainPrefixes(std::string_view cluster,
                                       const std::vector<MirroredPrefix>& prefixes) {
  // The canaries first, so that agents stop taking the cache for complete before it empties.
  std::vector<std::string> drained = {DirectoryPrefix(JoinPath(kSyncedPrefix, cluster))};
  if (prefixes.empty()) {
    // The whole per-cluster directory of each kind, whatever the remote's capabilities were.
    ClusterCapabilities every_kind;
    every_kind.service_exports_enabled = true;
    for (const MirroredPrefix& prefix : CiliumLayout(cluster, every_kind)) {
      drained.push_back(DirectoryPrefix(JoinPath(prefix.synced_key, cluster)));
    }
  } else {
    for (const MirroredPrefix& prefix : prefixes) drained.push_back(DirectoryPrefix(prefix.target));
  }
  return drained;
}

}  // namespace kvstore::mesh

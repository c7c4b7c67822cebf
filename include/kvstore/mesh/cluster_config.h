// The cluster configuration Cilium keeps in each cluster's etcd at cilium/cluster-config/<name>,
// and the rules for cluster names and IDs.
#ifndef KVSTORE_MESH_CLUSTER_CONFIG_H_
#define KVSTORE_MESH_CLUSTER_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/export.h"

namespace kvstore::mesh {

inline constexpr std::string_view kClusterConfigPrefix = "cilium/cluster-config";
// The default of maxConnectedClusters, which bounds cluster IDs; the other value Cilium allows is
// 511.
inline constexpr uint32_t kDefaultMaxConnectedClusters = 255;
inline constexpr size_t kMaxClusterNameLength = 32;

// What a cluster tells the clusters that connect to it.
struct KVSTORE_EXPORT ClusterCapabilities {
  // It writes cilium/synced/<name>/<prefix> once each prefix is complete.
  bool synced_canaries = false;
  // Its data is read from cilium/cache/... (a kvstoremesh fills it), not cilium/state/....
  bool cached = false;
  // 0: not given (taken as kDefaultMaxConnectedClusters).
  uint32_t max_connected_clusters = 0;
  // Whether it exports MCS-API service exports; nullopt: not given.
  std::optional<bool> service_exports_enabled;
  bool operator==(const ClusterCapabilities&) const = default;
};

// Cilium's CiliumClusterConfig: {"id":N,"capabilities":{"syncedCanaries":..,"cached":..,
// "maxConnectedClusters":..,"serviceExportsEnabled":..}}.
struct KVSTORE_EXPORT ClusterConfig {
  uint32_t id = 0;
  ClusterCapabilities capabilities;
  bool operator==(const ClusterConfig&) const = default;
};

// cilium/cluster-config/<cluster>.
KVSTORE_EXPORT std::string ClusterConfigPath(std::string_view cluster);

// The JSON Cilium writes; fields it does not know are ignored, as Go's json.Unmarshal does.
// InvalidArgument for what is not such a JSON object, or has a field of the wrong type.
KVSTORE_EXPORT absl::StatusOr<ClusterConfig> ParseClusterConfig(std::string_view json);
// The JSON form Cilium writes: zero fields left out ("omitempty"), serviceExportsEnabled only
// when set.
KVSTORE_EXPORT std::string FormatClusterConfig(const ClusterConfig& config);

// Cilium's rules: 1 to 32 characters, lower-case letters, digits and '-', beginning and ending
// with a letter or digit. InvalidArgument naming the rule broken.
KVSTORE_EXPORT absl::Status ValidateClusterName(std::string_view name);
// 1..max_connected_clusters (0 taken as kDefaultMaxConnectedClusters; ID 0 is reserved);
// max_connected_clusters must be 255 or 511. InvalidArgument otherwise.
KVSTORE_EXPORT absl::Status ValidateClusterId(uint32_t id, uint32_t max_connected_clusters = 0);
// ValidateClusterId with the config's own maxConnectedClusters.
KVSTORE_EXPORT absl::Status ValidateClusterConfig(const ClusterConfig& config);

// The config of `cluster` in `backend`: nullopt when there is none; InvalidArgument when it does
// not parse; the backend's error when it cannot be read.
KVSTORE_EXPORT absl::StatusOr<std::optional<ClusterConfig>> GetClusterConfig(
    const Context& ctx, Backend& backend, std::string_view cluster);
// Writes it (leased to the backend's session when `lease`) unless the key already holds exactly
// this text.
KVSTORE_EXPORT absl::Status SetClusterConfig(const Context& ctx, Backend& backend,
                                             std::string_view cluster, const ClusterConfig& config,
                                             bool lease);

}  // namespace kvstore::mesh

#endif  // KVSTORE_MESH_CLUSTER_CONFIG_H_

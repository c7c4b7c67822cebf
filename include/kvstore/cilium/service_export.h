// A Cilium MCS-API service export (Go: pkg/clustermesh/mcsapi/types.MCSAPIServiceSpec, Cilium
// 1.17+) at cilium/state/serviceexports/v1/<cluster>/<namespace>/<name>.
#ifndef KVSTORE_CILIUM_SERVICE_EXPORT_H_
#define KVSTORE_CILIUM_SERVICE_EXPORT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/cilium/validation.h"
#include "kvstore/export.h"
#include "kvstore/store/key.h"

namespace kvstore::cilium {

// {"name":..,"protocol":..,"appProtocol":..,"port":N}, the first three left out when empty.
struct KVSTORE_EXPORT ServicePort {
  std::string name;
  std::string protocol;
  std::optional<std::string> app_protocol;
  int32_t port = 0;
  bool operator==(const ServicePort&) const = default;
};

// sessionAffinityConfig: {"clientIP":{"timeoutSeconds":N}}, each part left out when unset.
struct KVSTORE_EXPORT ClientIPConfig {
  std::optional<int32_t> timeout_seconds;
  bool operator==(const ClientIPConfig&) const = default;
};
struct KVSTORE_EXPORT SessionAffinityConfig {
  std::optional<ClientIPConfig> client_ip;
  bool operator==(const SessionAffinityConfig&) const = default;
};

// {"cluster":..,"name":..,"namespace":..,"annotations":{..},"labels":{..},"Labels":{..},
//  "Annotations":{..},"exportCreationTimestamp":"2025-01-02T03:04:05Z","ports":[..],
//  "type":"ClusterSetIP","sessionAffinity":"None","sessionAffinityConfig":{"clientIP":
//  {"timeoutSeconds":N}},"ipFamilies":[..],"internalTrafficPolicy":..,"trafficDistribution":..}
// with the maps, sessionAffinityConfig, ipFamilies and the last two left out when empty. The
// capitalised "Labels"/"Annotations" are the legacy copies Cilium writes for older readers; they
// are read when the new ones are empty.
class KVSTORE_EXPORT ServiceExport : public store::LocalKey {
 public:
  std::string cluster;
  std::string name;
  std::string k8s_namespace;
  std::map<std::string, std::string> annotations;
  std::map<std::string, std::string> labels;
  // RFC 3339 in UTC, whole seconds ("2025-01-02T03:04:05Z"); "" is Go's zero time (null).
  std::string export_creation_timestamp;
  std::optional<std::vector<ServicePort>> ports;  // nullopt: null
  std::string type;                               // "ClusterSetIP" or "Headless"
  std::string session_affinity;                   // "None" or "ClientIP"
  std::optional<SessionAffinityConfig> session_affinity_config;
  std::vector<std::string> ip_families;
  std::optional<std::string> internal_traffic_policy;  // "Cluster" or "Local"
  std::optional<std::string> traffic_distribution;  // PreferClose, PreferSameZone, PreferSameNode

  // "<cluster>/<namespace>/<name>", relative to kServiceExportsPrefix.
  std::string GetKeyName() const override;
  absl::StatusOr<std::string> Marshal() const override;
  // Cilium's checks: cluster, namespace, name and exportCreationTimestamp set; type, session
  // affinity, internal traffic policy and traffic distribution among the known values; `key`
  // as for ClusterService. Other versions' field order (1.17's) is read, and written in this
  // one's.
  absl::Status Unmarshal(std::string_view key, std::string_view data) override;
  std::unique_ptr<store::LocalKey> DeepKeyCopy() const override;
};

// The export's cluster name is the cluster's.
KVSTORE_EXPORT absl::Status ValidateFromCluster(const ServiceExport& service_export,
                                                std::string_view key, const ClusterInfo& cluster);

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_SERVICE_EXPORT_H_

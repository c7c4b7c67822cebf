// A Cilium global service (Go: pkg/clustermesh/store.ClusterService) at
// cilium/state/services/v1/<cluster>/<namespace>/<name>.
#ifndef KVSTORE_CILIUM_SERVICE_H_
#define KVSTORE_CILIUM_SERVICE_H_

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

// {"Protocol":"TCP","Port":80} (Go: loadbalancer.L4Addr).
struct KVSTORE_EXPORT L4Addr {
  std::string protocol;
  uint16_t port = 0;
  bool operator==(const L4Addr&) const = default;
};

// Port name -> port, for one frontend or backend address.
using PortConfiguration = std::map<std::string, L4Addr>;

// {"zone":"a","forZones":[{"name":"a"}]} (Cilium 1.19+).
struct KVSTORE_EXPORT BackendZone {
  std::string zone;
  std::optional<std::vector<std::string>> for_zones;  // the names; nullopt: null
  bool operator==(const BackendZone&) const = default;
};

// {"cluster":..,"namespace":..,"name":..,"frontends":{IP:{port name:{..}}},"backends":{..},
//  "hostnames":{..} (left out when empty unless write_empty_hostnames),"zones":{..} (left out when
//  empty),"labels":{..}, "selector":{..},"includeExternal":b,"shared":b,"clusterID":N}. The maps
//  start empty, as
// Cilium's NewClusterService makes them; nullopt is a nil map (null). A null port entry is read
// as an empty one (Cilium never writes one).
class KVSTORE_EXPORT ClusterService : public store::LocalKey {
 public:
  std::string cluster;
  std::string k8s_namespace;
  std::string name;
  std::optional<std::map<std::string, PortConfiguration>> frontends{std::in_place};
  std::optional<std::map<std::string, PortConfiguration>> backends{std::in_place};
  std::map<std::string, std::string> hostnames;
  // Cilium before 1.19 writes "hostnames":{} when there are none; 1.19 leaves it out. Unmarshal
  // sets this when the value had it, so that such a value is written back as it was.
  bool write_empty_hostnames = false;
  std::map<std::string, BackendZone> zones;
  std::optional<std::map<std::string, std::string>> labels{std::in_place};
  std::optional<std::map<std::string, std::string>> selector{std::in_place};
  bool include_external = false;
  bool shared = false;
  uint32_t cluster_id = 0;

  // "<cluster>/<namespace>/<name>", relative to kServicesPrefix.
  std::string GetKeyName() const override;
  absl::StatusOr<std::string> Marshal() const override;
  // Parses Go's JSON as Node::Unmarshal does, then Cilium's checks: cluster, namespace and name
  // set; cluster ID at most kMaxClusterId; frontend and backend addresses IP addresses without
  // a zone; `key` (when not empty) is "<namespace>/<name>" (relative to the cluster's directory)
  // or ends with GetKeyName() as whole path elements. InvalidArgument naming the key and the
  // field; on error the service is unchanged.
  absl::Status Unmarshal(std::string_view key, std::string_view data) override;
  std::unique_ptr<store::LocalKey> DeepKeyCopy() const override;
};

// The service's cluster name and ID are the cluster's.
KVSTORE_EXPORT absl::Status ValidateFromCluster(const ClusterService& service, std::string_view key,
                                                const ClusterInfo& cluster);

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_SERVICE_H_

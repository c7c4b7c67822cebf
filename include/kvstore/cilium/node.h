// A Cilium node (Go: pkg/node/types.Node) at cilium/state/nodes/v1/<cluster>/<name>.
#ifndef KVSTORE_CILIUM_NODE_H_
#define KVSTORE_CILIUM_NODE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/cilium/net.h"
#include "kvstore/cilium/validation.h"
#include "kvstore/export.h"
#include "kvstore/store/key.h"

namespace kvstore::cilium {

// Node address types (Go: addressing.AddressType).
inline constexpr std::string_view kNodeHostname = "Hostname";
inline constexpr std::string_view kNodeExternalIP = "ExternalIP";
inline constexpr std::string_view kNodeInternalIP = "InternalIP";
inline constexpr std::string_view kNodeExternalDNS = "ExternalDNS";
inline constexpr std::string_view kNodeInternalDNS = "InternalDNS";
inline constexpr std::string_view kNodeCiliumInternalIP = "CiliumInternalIP";

struct KVSTORE_EXPORT NodeAddress {
  std::string type;  // one of the kNode* types above
  std::string ip;    // canonical (CanonicalIP); "" for none
  bool operator==(const NodeAddress&) const = default;
};

// The value is Go's json.Marshal of the struct, no JSON tags: {"Name":..,"Cluster":..,
// "IPAddresses":[{"Type":..,"IP":..}],"IPv4AllocCIDR":{"IP":..,"Mask":..}|null,
// "IPv4SecondaryAllocCIDRs":[..]|null,"IPv6AllocCIDR":..,"IPv6SecondaryAllocCIDRs":..,
// "IPv4HealthIP":"","IPv6HealthIP":"","IPv4IngressIP":"","IPv6IngressIP":"","ClusterID":N,
// "Source":"..","EncryptionKey":N,"Labels":{..}|null,"Annotations":{..}|null,
// "NodeIdentity":N,"WireguardPubKey":"..","BootID":".."}.
// nullopt members are Go's nil (null); IPs are "" when unset.
class KVSTORE_EXPORT Node : public store::LocalKey {
 public:
  std::string name;
  std::string cluster;
  std::optional<std::vector<NodeAddress>> ip_addresses;
  std::optional<IPNet> ipv4_alloc_cidr;
  std::optional<std::vector<std::optional<IPNet>>> ipv4_secondary_alloc_cidrs;
  std::optional<IPNet> ipv6_alloc_cidr;
  std::optional<std::vector<std::optional<IPNet>>> ipv6_secondary_alloc_cidrs;
  std::string ipv4_health_ip;
  std::string ipv6_health_ip;
  std::string ipv4_ingress_ip;
  std::string ipv6_ingress_ip;
  uint32_t cluster_id = 0;
  std::string source;  // "kvstore", "custom-resource", "local", ...
  uint8_t encryption_key = 0;
  std::optional<std::map<std::string, std::string>> labels;
  std::optional<std::map<std::string, std::string>> annotations;
  // Cilium 1.14 to 1.19 write NodeIdentity (0 unless set); Cilium's main since 2026 dropped
  // it. nullopt: left out, as the newer agents write it. Parsing keeps whether it was there.
  std::optional<uint32_t> node_identity = 0;
  std::string wireguard_pub_key;
  std::string boot_id;

  // "<cluster>/<name>" (just the name when the cluster is empty), relative to kNodesPrefix.
  std::string GetKeyName() const override;
  // InvalidArgument when an IP is not an IP address.
  absl::StatusOr<std::string> Marshal() const override;
  // Parses Go's JSON (unknown fields ignored, field names matched case-insensitively, as Go
  // does) and checks what Cilium's readers check: Name and Cluster set, ClusterID at most
  // kMaxClusterId, and `key` (when not empty) either "<name>" (relative to the cluster's
  // directory) or ending with "<cluster>/<name>" as whole path elements (relative to
  // kNodesPrefix, or a full key). InvalidArgument naming the key and the field; on error the
  // node is unchanged.
  absl::Status Unmarshal(std::string_view key, std::string_view data) override;
  std::unique_ptr<store::LocalKey> DeepKeyCopy() const override;
};

// A remote cluster's node: Cluster and ClusterID are the cluster's.
KVSTORE_EXPORT absl::Status ValidateFromCluster(const Node& node, std::string_view key,
                                                const ClusterInfo& cluster);

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_NODE_H_

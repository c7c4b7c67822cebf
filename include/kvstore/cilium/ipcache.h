// A Cilium ipcache entry (Go: pkg/identity.IPIdentityPair) at
// cilium/state/ip/v1/default/<IP>[/<ones>]: which identity an endpoint's IP has, on which host.
#ifndef KVSTORE_CILIUM_IPCACHE_H_
#define KVSTORE_CILIUM_IPCACHE_H_

#include <cstdint>
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

struct KVSTORE_EXPORT NamedPort {
  std::string name;
  uint16_t port = 0;
  std::string protocol;  // "TCP", "UDP", "SCTP"
  bool operator==(const NamedPort&) const = default;
};

// {"IP":"10.0.0.1","Mask":null,"HostIP":"192.168.0.1","ID":N,"Key":N,"Metadata":"..",
//  "K8sNamespace":..,"K8sPodName":..,"K8sServiceAccount":..,"NamedPorts":[..]}, the last four
// left out when empty (omitempty).
class KVSTORE_EXPORT IPCacheEntry : public store::LocalKey {
 public:
  std::string ip;                   // canonical (CanonicalIP)
  std::optional<std::string> mask;  // raw bytes; nullopt: a single address (null)
  std::string host_ip;              // "" when unset
  uint32_t id = 0;                  // the numeric identity
  uint8_t key = 0;                  // encryption key index
  std::string metadata;
  std::string k8s_namespace;
  std::string k8s_pod_name;
  std::string k8s_service_account;     // Cilium 1.19+
  std::vector<NamedPort> named_ports;  // sorted by name, as Cilium writes them

  // The IP, with "/<ones>" when a mask is set (Go's PrefixString), relative to kIPCachePrefix.
  std::string GetKeyName() const override;
  absl::StatusOr<std::string> Marshal() const override;
  // IP set and an IP address; `key` (when not empty) ends with GetKeyName() as whole path
  // elements. InvalidArgument naming the key and field; on error unchanged.
  absl::Status Unmarshal(std::string_view key, std::string_view data) override;
  std::unique_ptr<store::LocalKey> DeepKeyCopy() const override;
};

// The ID is reserved (1..255) or within the cluster's identity range.
KVSTORE_EXPORT absl::Status ValidateFromCluster(const IPCacheEntry& entry, std::string_view key,
                                                const ClusterInfo& cluster);

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_IPCACHE_H_

// Where Cilium keeps each kind of its state in the kvstore. Stable API: composed here only (the
// kvstoremesh cache layout is mesh::CiliumLayout).
#ifndef KVSTORE_CILIUM_LAYOUT_H_
#define KVSTORE_CILIUM_LAYOUT_H_

#include <string_view>

namespace kvstore::cilium {

// cilium/state/nodes/v1/<cluster>/<node>
inline constexpr std::string_view kNodesPrefix = "cilium/state/nodes/v1";
// cilium/state/identities/v1/id/<ID> and .../value/<labels string>/<node IP>
inline constexpr std::string_view kIdentitiesPrefix = "cilium/state/identities/v1";
// cilium/state/ip/v1/default/<IP>[/<ones>]
inline constexpr std::string_view kIPCachePrefix = "cilium/state/ip/v1/default";
// cilium/state/services/v1/<cluster>/<namespace>/<name>
inline constexpr std::string_view kServicesPrefix = "cilium/state/services/v1";
// cilium/state/serviceexports/v1/<cluster>/<namespace>/<name>
inline constexpr std::string_view kServiceExportsPrefix = "cilium/state/serviceexports/v1";

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_LAYOUT_H_

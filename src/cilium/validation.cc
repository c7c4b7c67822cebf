#include "kvstore/cilium/validation.h"

namespace kvstore::cilium {

IdentityRange ClusterIdentityRange(uint32_t cluster_id, uint32_t max_connected_clusters) {
  // 511 clusters take one more bit of the 24-bit identity, leaving 15 for each cluster's own.
  const uint32_t shift = max_connected_clusters == 511 ? 15 : 16;
  return IdentityRange{cluster_id << shift, ((cluster_id + 1) << shift) - 1};
}

}  // namespace kvstore::cilium

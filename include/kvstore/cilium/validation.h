// What Cilium's agents check in a remote cluster's data, and the shared pieces of each typed
// key: the cluster the data comes from, identity ranges, and a key creator that checks.
#ifndef KVSTORE_CILIUM_VALIDATION_H_
#define KVSTORE_CILIUM_VALIDATION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "kvstore/export.h"
#include "kvstore/mesh/cluster_config.h"
#include "kvstore/store/key.h"

namespace kvstore::cilium {

// The cluster whose data is read, as its cluster config (cilium/cluster-config/<name>) says.
struct KVSTORE_EXPORT ClusterInfo {
  std::string name;
  uint32_t id = 0;
  // 0: mesh::kDefaultMaxConnectedClusters (255); the other value Cilium allows is 511.
  uint32_t max_connected_clusters = 0;

  static ClusterInfo FromConfig(std::string_view name, const mesh::ClusterConfig& config) {
    return ClusterInfo{std::string(name), config.id, config.capabilities.max_connected_clusters};
  }
};

// The identities cluster `cluster_id` allocates: [c<<16, ((c+1)<<16)-1], or with 511
// connected clusters [c<<15, ((c+1)<<15)-1].
struct KVSTORE_EXPORT IdentityRange {
  uint32_t min = 0;
  uint32_t max = 0;
  bool Contains(uint32_t id) const { return id >= min && id <= max; }
};
KVSTORE_EXPORT IdentityRange ClusterIdentityRange(uint32_t cluster_id,
                                                  uint32_t max_connected_clusters = 0);

// Cilium's reserved identities (host, world, remote-node, ...): 1 to 255.
inline bool IsReservedIdentity(uint32_t id) { return id > 0 && id < 256; }

// The largest cluster ID any Cilium configuration accepts; every typed key's Unmarshal rejects
// cluster IDs above it (a reader that knows the cluster's maxConnectedClusters checks more with
// Validating<T>).
inline constexpr uint32_t kMaxClusterId = 511;

// A typed key that, once its own Unmarshal succeeded, also checks the value as Cilium's agents
// check a remote cluster's data: ValidateFromCluster(const T&, key, cluster) (declared beside
// each type) -- the object's cluster name and ID are the cluster's, its identities in the
// cluster's range. An object that fails is not taken (the key keeps its previous contents).
template <typename T>
class Validating final : public T {
 public:
  explicit Validating(ClusterInfo cluster) : cluster_(std::move(cluster)) {}

  absl::Status Unmarshal(std::string_view key, std::string_view data) override {
    T parsed;
    if (absl::Status status = parsed.Unmarshal(key, data); !status.ok()) return status;
    if (absl::Status status = ValidateFromCluster(parsed, key, cluster_); !status.ok()) {
      return status;
    }
    static_cast<T&>(*this) = std::move(parsed);
    return absl::OkStatus();
  }
  std::unique_ptr<store::LocalKey> DeepKeyCopy() const override {
    return std::make_unique<Validating>(*this);
  }
  const ClusterInfo& cluster() const { return cluster_; }

 private:
  ClusterInfo cluster_;
};

// A store::KeyCreator of T (a type of this folder) that checks every value against `cluster`.
template <typename T>
store::KeyCreator ValidatingCreator(ClusterInfo cluster) {
  return [cluster = std::move(cluster)]() -> std::unique_ptr<store::Key> {
    return std::make_unique<Validating<T>>(cluster);
  };
}

// A store::KeyCreator of T that checks only what T::Unmarshal checks.
template <typename T>
store::KeyCreator Creator() {
  return []() -> std::unique_ptr<store::Key> { return std::make_unique<T>(); };
}

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_VALIDATION_H_

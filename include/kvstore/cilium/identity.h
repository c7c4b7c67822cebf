// Cilium's security identities under cilium/state/identities/v1 (Go: pkg/identity/key,
// pkg/allocator and pkg/kvstore/allocator): the id/ keys, one per identity, and the value/ keys,
// one per node using it.
#ifndef KVSTORE_CILIUM_IDENTITY_H_
#define KVSTORE_CILIUM_IDENTITY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/cilium/labels.h"
#include "kvstore/cilium/validation.h"
#include "kvstore/export.h"
#include "kvstore/store/key.h"

namespace kvstore::cilium {

// id/<ID> -> the labels string (FormatLabels). Written without a lease.
class KVSTORE_EXPORT Identity : public store::LocalKey {
 public:
  uint32_t id = 0;
  std::vector<Label> labels;

  // "id/<ID>", relative to kIdentitiesPrefix.
  std::string GetKeyName() const override;
  // The labels string; InvalidArgument when there are no labels.
  absl::StatusOr<std::string> Marshal() const override;
  // The ID from `key`'s last path element (`key` is "<ID>", or ends in "id/<ID>": relative to
  // kIdentitiesPrefix, to its id/ directory, or to a kvstoremesh cache directory), a decimal
  // number from 1 to 2^32-1; the labels from the value, which must hold at least one label.
  // InvalidArgument naming the key otherwise; on error the identity is unchanged.
  absl::Status Unmarshal(std::string_view key, std::string_view data) override;
  std::unique_ptr<store::LocalKey> DeepKeyCopy() const override;
};

// value/<labels string>/<node> -> the ID in decimal. Written leased, one per node (its IP).
class KVSTORE_EXPORT IdentityValueKey : public store::LocalKey {
 public:
  std::vector<Label> labels;
  std::string node;  // the writer's suffix: its node IP
  uint32_t id = 0;

  // "value/<labels string>/<node>", relative to kIdentitiesPrefix.
  std::string GetKeyName() const override;
  absl::StatusOr<std::string> Marshal() const override;
  // `key` must hold "value/"; the node is what follows its last '/' (labels strings may hold
  // '/'), the labels what lies between. InvalidArgument naming the key otherwise.
  absl::Status Unmarshal(std::string_view key, std::string_view data) override;
  std::unique_ptr<store::LocalKey> DeepKeyCopy() const override;
};

// The ID is within the cluster's identity range.
KVSTORE_EXPORT absl::Status ValidateFromCluster(const Identity& identity, std::string_view key,
                                                const ClusterInfo& cluster);
KVSTORE_EXPORT absl::Status ValidateFromCluster(const IdentityValueKey& value, std::string_view key,
                                                const ClusterInfo& cluster);

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_IDENTITY_H_

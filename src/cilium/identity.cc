#include "kvstore/cilium/identity.h"

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cilium/go_json.h"

namespace kvstore::cilium {
namespace {

using internal::Av;
using internal::Where;

// A decimal identity: digits only (Go's strconv.ParseUint), 1 to 2^32-1.
absl::Status ParseId(std::string_view text, const Where& where, uint32_t& out) {
  uint64_t id = 0;
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(Av(text), &id) || id > UINT32_MAX) {
    return where.Error(absl::StrCat("\"", Av(text), "\" is not an identity (a decimal number)"));
  }
  if (id == 0) return where.Error("0 is not an identity");
  out = static_cast<uint32_t>(id);
  return absl::OkStatus();
}

absl::Status CheckRange(uint32_t id, const Where& where, const ClusterInfo& cluster) {
  const IdentityRange range = ClusterIdentityRange(cluster.id, cluster.max_connected_clusters);
  if (!range.Contains(id)) {
    return where.Error(absl::StrCat(id, " is outside cluster ", cluster.name, "'s identities [",
                                    range.min, ", ", range.max, "] (cluster ID ", cluster.id, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string Identity::GetKeyName() const { return absl::StrCat("id/", id); }

absl::StatusOr<std::string> Identity::Marshal() const {
  if (labels.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("identity ", id, " has no labels"));
  }
  return FormatLabels(labels);
}

absl::Status Identity::Unmarshal(std::string_view key, std::string_view data) {
  const size_t slash = key.rfind('/');
  const std::string_view id_text = slash == std::string_view::npos ? key : key.substr(slash + 1);
  if (slash != std::string_view::npos) {
    const std::string_view dir = key.substr(0, slash);
    if (dir != "id" && !dir.ends_with("/id")) {
      return Where{key, "ID"}.Error("the key is not below an id/ directory");
    }
  }
  uint32_t parsed_id = 0;
  KVSTORE_RETURN_IF_ERROR(ParseId(id_text, Where{key, "ID"}, parsed_id));
  std::vector<Label> parsed = ParseLabels(data);
  if (parsed.empty()) return Where{key, "Labels"}.Error("no labels in the value");
  id = parsed_id;
  labels = std::move(parsed);
  return absl::OkStatus();
}

std::unique_ptr<store::LocalKey> Identity::DeepKeyCopy() const {
  return std::make_unique<Identity>(*this);
}

std::string IdentityValueKey::GetKeyName() const {
  return absl::StrCat("value/", FormatLabels(labels), "/", node);
}

absl::StatusOr<std::string> IdentityValueKey::Marshal() const { return absl::StrCat(id); }

absl::Status IdentityValueKey::Unmarshal(std::string_view key, std::string_view data) {
  const Where where{key, ""};
  const size_t value_dir = key.starts_with("value/") ? 0 : key.find("/value/");
  if (value_dir == std::string_view::npos) {
    return where.Error("the key is not below a value/ directory");
  }
  const std::string_view rest = key.substr(key.find("value/", value_dir) + 6);
  const size_t last = rest.rfind('/');
  if (last == std::string_view::npos || last + 1 == rest.size()) {
    return where.Member("Node").Error("no node after the labels");
  }
  std::vector<Label> parsed = ParseLabels(rest.substr(0, last));
  if (parsed.empty()) return where.Member("Labels").Error("no labels in the key");
  uint32_t parsed_id = 0;
  KVSTORE_RETURN_IF_ERROR(ParseId(data, where.Member("ID"), parsed_id));
  labels = std::move(parsed);
  node = rest.substr(last + 1);
  id = parsed_id;
  return absl::OkStatus();
}

std::unique_ptr<store::LocalKey> IdentityValueKey::DeepKeyCopy() const {
  return std::make_unique<IdentityValueKey>(*this);
}

absl::Status ValidateFromCluster(const Identity& identity, std::string_view key,
                                 const ClusterInfo& cluster) {
  return CheckRange(identity.id, Where{key, "ID"}, cluster);
}

absl::Status ValidateFromCluster(const IdentityValueKey& value, std::string_view key,
                                 const ClusterInfo& cluster) {
  return CheckRange(value.id, Where{key, "ID"}, cluster);
}

}  // namespace kvstore::cilium

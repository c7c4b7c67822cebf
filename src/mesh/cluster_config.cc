#include "kvstore/mesh/cluster_config.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/write_checks.h"
#include "kvstore/paths.h"
#include "nlohmann/json.hpp"

namespace kvstore::mesh {
namespace {

using Json = nlohmann::json;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// `object[name]` as a bool into `*out` when present; false when present with another type.
bool ReadBool(const Json& object, const char* name, bool* out) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return true;
  if (!it->is_boolean()) return false;
  *out = it->get<bool>();
  return true;
}

// `object[name]` as an unsigned 32-bit number; false when present and not one.
bool ReadUint32(const Json& object, const char* name, uint32_t* out) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return true;
  if (!it->is_number_unsigned() || it->get<uint64_t>() > UINT32_MAX) return false;
  *out = static_cast<uint32_t>(it->get<uint64_t>());
  return true;
}

}  // namespace

std::string ClusterConfigPath(std::string_view cluster) {
  return JoinPath(kClusterConfigPrefix, cluster);
}

absl::StatusOr<ClusterConfig> ParseClusterConfig(std::string_view json) {
  Json parsed = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster config is not a JSON object: ", internal::DescribeKey(json)));
  }
  ClusterConfig config;
  if (!ReadUint32(parsed, "id", &config.id)) {
    return absl::InvalidArgumentError("cluster config: \"id\" is not an unsigned 32-bit number");
  }
  auto capabilities = parsed.find("capabilities");
  if (capabilities != parsed.end() && !capabilities->is_null()) {
    if (!capabilities->is_object()) {
      return absl::InvalidArgumentError("cluster config: \"capabilities\" is not an object");
    }
    ClusterCapabilities& caps = config.capabilities;
    if (!ReadBool(*capabilities, "syncedCanaries", &caps.synced_canaries) ||
        !ReadBool(*capabilities, "cached", &caps.cached)) {
      return absl::InvalidArgumentError(
          "cluster config: \"syncedCanaries\" and \"cached\" must be booleans");
    }
    if (!ReadUint32(*capabilities, "maxConnectedClusters", &caps.max_connected_clusters)) {
      return absl::InvalidArgumentError(
          "cluster config: \"maxConnectedClusters\" is not an unsigned 32-bit number");
    }
    if (auto it = capabilities->find("serviceExportsEnabled");
        it != capabilities->end() && !it->is_null()) {
      if (!it->is_boolean()) {
        return absl::InvalidArgumentError(
            "cluster config: \"serviceExportsEnabled\" must be a boolean");
      }
      caps.service_exports_enabled = it->get<bool>();
    }
  }
  return config;
}

std::string FormatClusterConfig(const ClusterConfig& config) {
  // Go's encoding/json of CiliumClusterConfig: fields in struct order, every one "omitempty"
  // (zero values left out; serviceExportsEnabled is a pointer, so false is written); by hand,
  // since nlohmann::json would sort the keys.
  const ClusterCapabilities& caps = config.capabilities;
  std::vector<std::string> fields;
  if (caps.synced_canaries) fields.push_back("\"syncedCanaries\":true");
  if (caps.cached) fields.push_back("\"cached\":true");
  if (caps.max_connected_clusters != 0) {
    fields.push_back(absl::StrCat("\"maxConnectedClusters\":", caps.max_connected_clusters));
  }
  if (caps.service_exports_enabled.has_value()) {
    fields.push_back(absl::StrCat("\"serviceExportsEnabled\":",
                                  *caps.service_exports_enabled ? "true" : "false"));
  }
  std::string json = "{";
  if (config.id != 0) absl::StrAppend(&json, "\"id\":", config.id, ",");
  absl::StrAppend(&json, "\"capabilities\":{", absl::StrJoin(fields, ","), "}}");
  return json;
}

absl::Status ValidateClusterName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("cluster name is empty");
  if (name.size() > kMaxClusterNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("cluster name ", internal::DescribeKey(name),
                                                   " is longer than ", kMaxClusterNameLength,
                                                   " characters"));
  }
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster name ", internal::DescribeKey(name),
                       " may hold only lower-case letters, digits and '-'"));
    }
  }
  if (!IsLowerAlnum(name.front()) || !IsLowerAlnum(name.back())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster name ", internal::DescribeKey(name),
                     " must begin and end with a lower-case letter or a digit"));
  }
  return absl::OkStatus();
}

absl::Status ValidateClusterId(uint32_t id, uint32_t max_connected_clusters) {
  if (max_connected_clusters == 0) max_connected_clusters = kDefaultMaxConnectedClusters;
  if (max_connected_clusters != 255 && max_connected_clusters != 511) {
    return absl::InvalidArgumentError(
        absl::StrCat("maxConnectedClusters ", max_connected_clusters, " is neither 255 nor 511"));
  }
  if (id < 1 || id > max_connected_clusters) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster ID ", id, " is not between 1 and ", max_connected_clusters));
  }
  return absl::OkStatus();
}

absl::Status ValidateClusterConfig(const ClusterConfig& config) {
  return ValidateClusterId(config.id, config.capabilities.max_connected_clusters);
}

absl::StatusOr<std::optional<ClusterConfig>> GetClusterConfig(const Context& ctx, Backend& backend,
                                                              std::string_view cluster) {
  absl::StatusOr<std::optional<std::string>> value = backend.Get(ctx, ClusterConfigPath(cluster));
  if (!value.ok()) return value.status();
  if (!value->has_value()) return std::optional<ClusterConfig>();
  absl::StatusOr<ClusterConfig> config = ParseClusterConfig(**value);
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ClusterConfigPath(cluster), ": ", config.status().message()));
  }
  return std::optional<ClusterConfig>(*std::move(config));
}

absl::Status SetClusterConfig(const Context& ctx, Backend& backend, std::string_view cluster,
                              const ClusterConfig& config, bool lease) {
  absl::StatusOr<bool> wrote = backend.UpdateIfDifferent(ctx, ClusterConfigPath(cluster),
                                                         FormatClusterConfig(config), lease);
  return wrote.status();
}

}  // namespace kvstore::mesh

#include "kvstore/cilium/service.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cilium/go_json.h"
#include "cilium/key_names.h"
#include "kvstore/cilium/net.h"
#include "kvstore/mesh/cluster_config.h"

namespace kvstore::cilium {
namespace {

using internal::Av;
using internal::Json;
using internal::Where;

enum Field : size_t {
  kCluster,
  kNamespace,
  kName,
  kFrontends,
  kBackends,
  kHostnames,
  kZones,
  kLabels,
  kSelector,
  kIncludeExternal,
  kShared,
  kClusterID,
};
constexpr std::string_view kNames[] = {
    "cluster", "namespace", "name",     "frontends",       "backends", "hostnames",
    "zones",   "labels",    "selector", "includeExternal", "shared",   "clusterID",
};

absl::Status ReadL4Addr(const Json& value, const Where& where, L4Addr& out) {
  static constexpr std::string_view kAddrNames[] = {"Protocol", "Port"};
  return internal::DecodeObject(value, where, kAddrNames,
                                [&](size_t field, const Json& v, const Where& at) {
                                  return field == 0 ? internal::ReadString(v, at, out.protocol)
                                                    : internal::ReadUintAs(v, at, out.port);
                                });
}

// map[IP]PortConfiguration; a null PortConfiguration or L4Addr is read as an empty one.
absl::Status ReadAddresses(const Json& value, const Where& where,
                           std::optional<std::map<std::string, PortConfiguration>>& out) {
  if (value.is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  if (!value.is_object()) return where.Error("want an object");
  if (!out) out.emplace();
  for (const auto& [ip, ports] : value.items()) {
    const Where at = where.Member(ip);
    if (!ports.is_null() && !ports.is_object()) return at.Error("want an object");
    PortConfiguration& config = (*out)[ip];
    if (ports.is_null()) continue;
    for (const auto& [port_name, addr] : ports.items()) {
      KVSTORE_RETURN_IF_ERROR(ReadL4Addr(addr, at.Member(port_name), config[port_name]));
    }
  }
  return absl::OkStatus();
}

void WriteAddresses(internal::GoJsonWriter& w,
                    const std::optional<std::map<std::string, PortConfiguration>>& addresses) {
  if (!addresses) return w.Null();
  w.BeginObject();
  for (const auto& [ip, ports] : *addresses) {
    w.Key(ip);
    w.BeginObject();
    for (const auto& [port_name, addr] : ports) {
      w.Key(port_name);
      w.BeginObject();
      w.Key("Protocol");
      w.String(addr.protocol);
      w.Key("Port");
      w.Uint(addr.port);
      w.EndObject();
    }
    w.EndObject();
  }
  w.EndObject();
}

absl::Status ReadZone(const Json& value, const Where& where, BackendZone& out) {
  static constexpr std::string_view kZoneNames[] = {"zone", "forZones"};
  return internal::DecodeObject(
      value, where, kZoneNames, [&](size_t field, const Json& v, const Where& at) {
        if (field == 0) return internal::ReadString(v, at, out.zone);
        return internal::ReadSlice(
            v, at, out.for_zones, [](const Json& item, const Where& item_at, std::string& name) {
              static constexpr std::string_view kForZoneNames[] = {"name"};
              return internal::DecodeObject(item, item_at, kForZoneNames,
                                            [&](size_t, const Json& n, const Where& n_at) {
                                              return internal::ReadString(n, n_at, name);
                                            });
            });
      });
}

absl::Status CheckAddresses(const std::optional<std::map<std::string, PortConfiguration>>& map,
                            const Where& where) {
  if (!map) return absl::OkStatus();
  for (const auto& [ip, ports] : *map) {
    // CanonicalIP rejects zones too ("fe80::1%eth0"), as Cilium does.
    if (absl::StatusOr<std::string> parsed = CanonicalIP(ip); !parsed.ok()) {
      return where.Error(parsed.status().message());
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string ClusterService::GetKeyName() const {
  return absl::StrCat(cluster, "/", k8s_namespace, "/", name);
}

absl::StatusOr<std::string> ClusterService::Marshal() const {
  internal::GoJsonWriter w;
  w.BeginObject();
  w.Key(kNames[kCluster]);
  w.String(cluster);
  w.Key(kNames[kNamespace]);
  w.String(k8s_namespace);
  w.Key(kNames[kName]);
  w.String(name);
  w.Key(kNames[kFrontends]);
  WriteAddresses(w, frontends);
  w.Key(kNames[kBackends]);
  WriteAddresses(w, backends);
  if (!hostnames.empty() || write_empty_hostnames) {
    w.Key(kNames[kHostnames]);
    w.StringMap(hostnames);
  }
  if (!zones.empty()) {
    w.Key(kNames[kZones]);
    w.BeginObject();
    for (const auto& [ip, zone] : zones) {
      w.Key(ip);
      w.BeginObject();
      w.Key("zone");
      w.String(zone.zone);
      w.Key("forZones");
      if (zone.for_zones) {
        w.BeginArray();
        for (const std::string& for_zone : *zone.for_zones) {
          w.BeginObject();
          w.Key("name");
          w.String(for_zone);
          w.EndObject();
        }
        w.EndArray();
      } else {
        w.Null();
      }
      w.EndObject();
    }
    w.EndObject();
  }
  w.Key(kNames[kLabels]);
  w.StringMap(labels);
  w.Key(kNames[kSelector]);
  w.StringMap(selector);
  w.Key(kNames[kIncludeExternal]);
  w.Bool(include_external);
  w.Key(kNames[kShared]);
  w.Bool(shared);
  w.Key(kNames[kClusterID]);
  w.Uint(cluster_id);
  w.EndObject();
  return w.Take();
}

absl::Status ClusterService::Unmarshal(std::string_view key, std::string_view data) {
  Json value;
  KVSTORE_RETURN_IF_ERROR(internal::ParseJson(key, data, value));
  const Where where{key, ""};
  ClusterService svc;
  KVSTORE_RETURN_IF_ERROR(internal::DecodeObject(
      value, where, kNames, [&](size_t field, const Json& v, const Where& at) -> absl::Status {
        switch (field) {
          case kCluster:
            return internal::ReadString(v, at, svc.cluster);
          case kNamespace:
            return internal::ReadString(v, at, svc.k8s_namespace);
          case kName:
            return internal::ReadString(v, at, svc.name);
          case kFrontends:
            return ReadAddresses(v, at, svc.frontends);
          case kBackends:
            return ReadAddresses(v, at, svc.backends);
          case kHostnames: {
            std::optional<std::map<std::string, std::string>> map = std::move(svc.hostnames);
            KVSTORE_RETURN_IF_ERROR(internal::ReadStringMap(v, at, map));
            svc.hostnames = map.value_or(std::map<std::string, std::string>{});
            svc.write_empty_hostnames = v.is_object() && v.empty();
            return absl::OkStatus();
          }
          case kZones: {
            if (v.is_null()) {
              svc.zones.clear();
              return absl::OkStatus();
            }
            if (!v.is_object()) return at.Error("want an object");
            for (const auto& [ip, zone] : v.items()) {
              KVSTORE_RETURN_IF_ERROR(ReadZone(zone, at.Member(ip), svc.zones[ip]));
            }
            return absl::OkStatus();
          }
          case kLabels:
            return internal::ReadStringMap(v, at, svc.labels);
          case kSelector:
            return internal::ReadStringMap(v, at, svc.selector);
          case kIncludeExternal:
            return internal::ReadBool(v, at, svc.include_external);
          case kShared:
            return internal::ReadBool(v, at, svc.shared);
          case kClusterID:
            return internal::ReadUintAs(v, at, svc.cluster_id);
        }
        return absl::OkStatus();
      }));
  if (svc.cluster.empty()) return where.Member("cluster").Error("is empty");
  if (svc.k8s_namespace.empty()) return where.Member("namespace").Error("is empty");
  if (svc.name.empty()) return where.Member("name").Error("is empty");
  if (svc.cluster_id > kMaxClusterId) {
    return where.Member("clusterID")
        .Error(absl::StrCat(svc.cluster_id, " is above the largest cluster ID, ", kMaxClusterId));
  }
  KVSTORE_RETURN_IF_ERROR(CheckAddresses(svc.frontends, where.Member("frontends")));
  KVSTORE_RETURN_IF_ERROR(CheckAddresses(svc.backends, where.Member("backends")));
  if (!internal::KeyMatches(key, svc.GetKeyName(),
                            absl::StrCat(svc.k8s_namespace, "/", svc.name))) {
    return where.Member("name").Error(
        absl::StrCat("the service \"", svc.GetKeyName(), "\" does not match the key"));
  }
  *this = std::move(svc);
  return absl::OkStatus();
}

std::unique_ptr<store::LocalKey> ClusterService::DeepKeyCopy() const {
  return std::make_unique<ClusterService>(*this);
}

absl::Status ValidateFromCluster(const ClusterService& service, std::string_view key,
                                 const ClusterInfo& cluster) {
  const Where where{key, ""};
  if (service.cluster != cluster.name) {
    return where.Member("cluster").Error(absl::StrCat(
        "\"", service.cluster, "\" is not the cluster's name, \"", cluster.name, "\""));
  }
  if (service.cluster_id != cluster.id) {
    return where.Member("clusterID")
        .Error(absl::StrCat(service.cluster_id, " is not the cluster's ID, ", cluster.id));
  }
  if (absl::Status status = mesh::ValidateClusterId(cluster.id, cluster.max_connected_clusters);
      !status.ok()) {
    return where.Member("clusterID").Error(status.message());
  }
  return absl::OkStatus();
}

}  // namespace kvstore::cilium

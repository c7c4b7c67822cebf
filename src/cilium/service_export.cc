#include "kvstore/cilium/service_export.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cilium/go_json.h"
#include "cilium/key_names.h"

namespace kvstore::cilium {
namespace {

using internal::Av;
using internal::Json;
using internal::Where;

enum Field : size_t {
  kCluster,
  kName,
  kNamespace,
  kAnnotations,
  kLabels,
  kLegacyLabels,
  kLegacyAnnotations,
  kExportCreationTimestamp,
  kPorts,
  kType,
  kSessionAffinity,
  kSessionAffinityConfig,
  kIPFamilies,
  kInternalTrafficPolicy,
  kTrafficDistribution,
};
constexpr std::string_view kNames[] = {
    "cluster",
    "name",
    "namespace",
    "annotations",
    "labels",
    "Labels",
    "Annotations",
    "exportCreationTimestamp",
    "ports",
    "type",
    "sessionAffinity",
    "sessionAffinityConfig",
    "ipFamilies",
    "internalTrafficPolicy",
    "trafficDistribution",
};

// metav1.Time: null is the zero time; otherwise RFC 3339, written back in UTC in whole seconds.
absl::Status ReadTime(const Json& value, const Where& where, std::string& out) {
  if (value.is_null()) {
    out.clear();
    return absl::OkStatus();
  }
  if (!value.is_string()) return where.Error("want an RFC 3339 time string");
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, value.get_ref<const std::string&>(), &time, &error)) {
    return where.Error(absl::StrCat("not an RFC 3339 time: ", error));
  }
  // Go's zero time is written as null again.
  if (time == absl::FromCivil(absl::CivilSecond(1, 1, 1, 0, 0, 0), absl::UTCTimeZone())) {
    out.clear();
    return absl::OkStatus();
  }
  out = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
  return absl::OkStatus();
}

absl::Status ReadPort(const Json& value, const Where& where, ServicePort& out) {
  static constexpr std::string_view kPortNames[] = {"name", "protocol", "appProtocol", "port"};
  return internal::DecodeObject(
      value, where, kPortNames, [&](size_t field, const Json& v, const Where& at) -> absl::Status {
        switch (field) {
          case 0:
            return internal::ReadString(v, at, out.name);
          case 1:
            return internal::ReadString(v, at, out.protocol);
          case 2:
            if (v.is_null()) {
              out.app_protocol.reset();
              return absl::OkStatus();
            }
            out.app_protocol.emplace();
            return internal::ReadString(v, at, *out.app_protocol);
          default: {
            int64_t port = out.port;
            KVSTORE_RETURN_IF_ERROR(internal::ReadInt(v, at, INT32_MIN, INT32_MAX, port));
            out.port = static_cast<int32_t>(port);
            return absl::OkStatus();
          }
        }
      });
}

absl::Status ReadOptionalString(const Json& value, const Where& where,
                                std::optional<std::string>& out) {
  if (value.is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  std::string text;
  KVSTORE_RETURN_IF_ERROR(internal::ReadString(value, where, text));
  out = std::move(text);
  return absl::OkStatus();
}

absl::Status ReadAffinityConfig(const Json& value, const Where& where,
                                std::optional<SessionAffinityConfig>& out) {
  if (value.is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  SessionAffinityConfig config;
  static constexpr std::string_view kConfigNames[] = {"clientIP"};
  static constexpr std::string_view kClientNames[] = {"timeoutSeconds"};
  KVSTORE_RETURN_IF_ERROR(internal::DecodeObject(
      value, where, kConfigNames, [&](size_t, const Json& v, const Where& at) -> absl::Status {
        if (v.is_null()) {
          config.client_ip.reset();
          return absl::OkStatus();
        }
        ClientIPConfig client;
        KVSTORE_RETURN_IF_ERROR(internal::DecodeObject(
            v, at, kClientNames, [&](size_t, const Json& t, const Where& t_at) -> absl::Status {
              if (t.is_null()) {
                client.timeout_seconds.reset();
                return absl::OkStatus();
              }
              int64_t seconds = 0;
              KVSTORE_RETURN_IF_ERROR(internal::ReadInt(t, t_at, INT32_MIN, INT32_MAX, seconds));
              client.timeout_seconds = static_cast<int32_t>(seconds);
              return absl::OkStatus();
            }));
        config.client_ip = client;
        return absl::OkStatus();
      }));
  out = config;
  return absl::OkStatus();
}

void WriteMapIfAny(internal::GoJsonWriter& w, std::string_view name,
                   const std::map<std::string, std::string>& map) {
  if (map.empty()) return;
  w.Key(name);
  w.StringMap(map);
}

bool OneOf(std::string_view value, std::initializer_list<std::string_view> allowed) {
  for (std::string_view a : allowed) {
    if (value == a) return true;
  }
  return false;
}

}  // namespace

std::string ServiceExport::GetKeyName() const {
  return absl::StrCat(cluster, "/", k8s_namespace, "/", name);
}

absl::StatusOr<std::string> ServiceExport::Marshal() const {
  internal::GoJsonWriter w;
  w.BeginObject();
  w.Key(kNames[kCluster]);
  w.String(cluster);
  w.Key(kNames[kName]);
  w.String(name);
  w.Key(kNames[kNamespace]);
  w.String(k8s_namespace);
  WriteMapIfAny(w, kNames[kAnnotations], annotations);
  WriteMapIfAny(w, kNames[kLabels], labels);
  // Cilium fills the legacy fields with the same maps before writing.
  WriteMapIfAny(w, kNames[kLegacyLabels], labels);
  WriteMapIfAny(w, kNames[kLegacyAnnotations], annotations);
  w.Key(kNames[kExportCreationTimestamp]);
  if (export_creation_timestamp.empty()) {
    w.Null();
  } else {
    w.String(export_creation_timestamp);
  }
  w.Key(kNames[kPorts]);
  if (ports) {
    w.BeginArray();
    for (const ServicePort& port : *ports) {
      w.BeginObject();
      if (!port.name.empty()) {
        w.Key("name");
        w.String(port.name);
      }
      if (!port.protocol.empty()) {
        w.Key("protocol");
        w.String(port.protocol);
      }
      if (port.app_protocol) {
        w.Key("appProtocol");
        w.String(*port.app_protocol);
      }
      w.Key("port");
      w.Int(port.port);
      w.EndObject();
    }
    w.EndArray();
  } else {
    w.Null();
  }
  w.Key(kNames[kType]);
  w.String(type);
  w.Key(kNames[kSessionAffinity]);
  w.String(session_affinity);
  if (session_affinity_config) {
    w.Key(kNames[kSessionAffinityConfig]);
    w.BeginObject();
    if (session_affinity_config->client_ip) {
      w.Key("clientIP");
      w.BeginObject();
      if (session_affinity_config->client_ip->timeout_seconds) {
        w.Key("timeoutSeconds");
        w.Int(*session_affinity_config->client_ip->timeout_seconds);
      }
      w.EndObject();
    }
    w.EndObject();
  }
  if (!ip_families.empty()) {
    w.Key(kNames[kIPFamilies]);
    w.BeginArray();
    for (const std::string& family : ip_families) w.String(family);
    w.EndArray();
  }
  if (internal_traffic_policy) {
    w.Key(kNames[kInternalTrafficPolicy]);
    w.String(*internal_traffic_policy);
  }
  if (traffic_distribution) {
    w.Key(kNames[kTrafficDistribution]);
    w.String(*traffic_distribution);
  }
  w.EndObject();
  return w.Take();
}

absl::Status ServiceExport::Unmarshal(std::string_view key, std::string_view data) {
  Json value;
  KVSTORE_RETURN_IF_ERROR(internal::ParseJson(key, data, value));
  const Where where{key, ""};
  ServiceExport spec;
  std::optional<std::map<std::string, std::string>> annotations_map, labels_map, legacy_labels,
      legacy_annotations;
  KVSTORE_RETURN_IF_ERROR(internal::DecodeObject(
      value, where, kNames, [&](size_t field, const Json& v, const Where& at) -> absl::Status {
        switch (field) {
          case kCluster:
            return internal::ReadString(v, at, spec.cluster);
          case kName:
            return internal::ReadString(v, at, spec.name);
          case kNamespace:
            return internal::ReadString(v, at, spec.k8s_namespace);
          case kAnnotations:
            return internal::ReadStringMap(v, at, annotations_map);
          case kLabels:
            return internal::ReadStringMap(v, at, labels_map);
          case kLegacyLabels:
            return internal::ReadStringMap(v, at, legacy_labels);
          case kLegacyAnnotations:
            return internal::ReadStringMap(v, at, legacy_annotations);
          case kExportCreationTimestamp:
            return ReadTime(v, at, spec.export_creation_timestamp);
          case kPorts:
            return internal::ReadSlice(v, at, spec.ports, ReadPort);
          case kType:
            return internal::ReadString(v, at, spec.type);
          case kSessionAffinity:
            return internal::ReadString(v, at, spec.session_affinity);
          case kSessionAffinityConfig:
            return ReadAffinityConfig(v, at, spec.session_affinity_config);
          case kIPFamilies: {
            std::optional<std::vector<std::string>> families;
            KVSTORE_RETURN_IF_ERROR(internal::ReadSlice(
                v, at, families, [](const Json& item, const Where& item_at, std::string& out) {
                  return internal::ReadString(item, item_at, out);
                }));
            spec.ip_families = families.value_or(std::vector<std::string>{});
            return absl::OkStatus();
          }
          case kInternalTrafficPolicy:
            return ReadOptionalString(v, at, spec.internal_traffic_policy);
          case kTrafficDistribution:
            return ReadOptionalString(v, at, spec.traffic_distribution);
        }
        return absl::OkStatus();
      }));
  // As Cilium: the legacy maps stand in for empty new ones.
  spec.annotations = annotations_map.value_or(std::map<std::string, std::string>{});
  if (spec.annotations.empty() && legacy_annotations) spec.annotations = *legacy_annotations;
  spec.labels = labels_map.value_or(std::map<std::string, std::string>{});
  if (spec.labels.empty() && legacy_labels) spec.labels = *legacy_labels;

  if (spec.cluster.empty()) return where.Member("cluster").Error("is empty");
  if (spec.k8s_namespace.empty()) return where.Member("namespace").Error("is empty");
  if (spec.name.empty()) return where.Member("name").Error("is empty");
  if (spec.export_creation_timestamp.empty()) {
    return where.Member("exportCreationTimestamp").Error("is unset");
  }
  if (!OneOf(spec.type, {"ClusterSetIP", "Headless"})) {
    return where.Member("type").Error(absl::StrCat("unknown type \"", spec.type, "\""));
  }
  if (!OneOf(spec.session_affinity, {"ClientIP", "None"})) {
    return where.Member("sessionAffinity")
        .Error(absl::StrCat("unknown session affinity \"", spec.session_affinity, "\""));
  }
  if (spec.internal_traffic_policy && !OneOf(*spec.internal_traffic_policy, {"Cluster", "Local"})) {
    return where.Member("internalTrafficPolicy")
        .Error(absl::StrCat("unknown policy \"", *spec.internal_traffic_policy, "\""));
  }
  if (spec.traffic_distribution &&
      !OneOf(*spec.traffic_distribution, {"PreferClose", "PreferSameZone", "PreferSameNode"})) {
    return where.Member("trafficDistribution")
        .Error(absl::StrCat("unknown traffic distribution \"", *spec.traffic_distribution, "\""));
  }
  if (!internal::KeyMatches(key, spec.GetKeyName(),
                            absl::StrCat(spec.k8s_namespace, "/", spec.name))) {
    return where.Member("name").Error(
        absl::StrCat("the export \"", spec.GetKeyName(), "\" does not match the key"));
  }
  *this = std::move(spec);
  return absl::OkStatus();
}

std::unique_ptr<store::LocalKey> ServiceExport::DeepKeyCopy() const {
  return std::make_unique<ServiceExport>(*this);
}

absl::Status ValidateFromCluster(const ServiceExport& service_export, std::string_view key,
                                 const ClusterInfo& cluster) {
  if (service_export.cluster != cluster.name) {
    return Where{key, "cluster"}.Error(absl::StrCat(
        "\"", service_export.cluster, "\" is not the cluster's name, \"", cluster.name, "\""));
  }
  return absl::OkStatus();
}

}  // namespace kvstore::cilium

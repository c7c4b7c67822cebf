#include "kvstore/cilium/ipcache.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cilium/go_json.h"
#include "cilium/key_names.h"
#include "kvstore/cilium/net.h"

namespace kvstore::cilium {
namespace {

using internal::Av;
using internal::Json;
using internal::Where;

enum Field : size_t {
  kIP,
  kMask,
  kHostIP,
  kID,
  kKey,
  kMetadata,
  kK8sNamespace,
  kK8sPodName,
  kK8sServiceAccount,
  kNamedPorts,
};
constexpr std::string_view kNames[] = {
    "IP",           "Mask",       "HostIP",
    "ID",           "Key",        "Metadata",
    "K8sNamespace", "K8sPodName", "K8sServiceAccount",
    "NamedPorts",
};

absl::Status ReadNamedPort(const Json& value, const Where& where, NamedPort& out) {
  static constexpr std::string_view kPortNames[] = {"Name", "Port", "Protocol"};
  return internal::DecodeObject(value, where, kPortNames,
                                [&](size_t field, const Json& v, const Where& at) {
                                  switch (field) {
                                    case 0:
                                      return internal::ReadString(v, at, out.name);
                                    case 1:
                                      return internal::ReadUintAs(v, at, out.port);
                                    default:
                                      return internal::ReadString(v, at, out.protocol);
                                  }
                                });
}

}  // namespace

std::string IPCacheEntry::GetKeyName() const {
  if (!mask) return ip;
  return absl::StrCat(ip, "/", MaskOnes(*mask).value_or(0));
}

absl::StatusOr<std::string> IPCacheEntry::Marshal() const {
  internal::GoJsonWriter w;
  w.BeginObject();
  w.Key(kNames[kIP]);
  KVSTORE_RETURN_IF_ERROR(internal::WriteIP(w, "IP", ip));
  w.Key(kNames[kMask]);
  if (mask) {
    w.Bytes(*mask);
  } else {
    w.Null();
  }
  w.Key(kNames[kHostIP]);
  KVSTORE_RETURN_IF_ERROR(internal::WriteIP(w, "HostIP", host_ip));
  w.Key(kNames[kID]);
  w.Uint(id);
  w.Key(kNames[kKey]);
  w.Uint(key);
  w.Key(kNames[kMetadata]);
  w.String(metadata);
  if (!k8s_namespace.empty()) {
    w.Key(kNames[kK8sNamespace]);
    w.String(k8s_namespace);
  }
  if (!k8s_pod_name.empty()) {
    w.Key(kNames[kK8sPodName]);
    w.String(k8s_pod_name);
  }
  if (!k8s_service_account.empty()) {
    w.Key(kNames[kK8sServiceAccount]);
    w.String(k8s_service_account);
  }
  if (!named_ports.empty()) {
    w.Key(kNames[kNamedPorts]);
    w.BeginArray();
    for (const NamedPort& port : named_ports) {
      w.BeginObject();
      w.Key("Name");
      w.String(port.name);
      w.Key("Port");
      w.Uint(port.port);
      w.Key("Protocol");
      w.String(port.protocol);
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
  return w.Take();
}

absl::Status IPCacheEntry::Unmarshal(std::string_view key_name, std::string_view data) {
  Json value;
  KVSTORE_RETURN_IF_ERROR(internal::ParseJson(key_name, data, value));
  const Where where{key_name, ""};
  IPCacheEntry entry;
  KVSTORE_RETURN_IF_ERROR(internal::DecodeObject(
      value, where, kNames, [&](size_t field, const Json& v, const Where& at) -> absl::Status {
        switch (field) {
          case kIP:
            return internal::ReadIP(v, at, entry.ip);
          case kMask:
            return internal::ReadBytes(v, at, entry.mask);
          case kHostIP:
            return internal::ReadIP(v, at, entry.host_ip);
          case kID:
            return internal::ReadUintAs(v, at, entry.id);
          case kKey:
            return internal::ReadUintAs(v, at, entry.key);
          case kMetadata:
            return internal::ReadString(v, at, entry.metadata);
          case kK8sNamespace:
            return internal::ReadString(v, at, entry.k8s_namespace);
          case kK8sPodName:
            return internal::ReadString(v, at, entry.k8s_pod_name);
          case kK8sServiceAccount:
            return internal::ReadString(v, at, entry.k8s_service_account);
          case kNamedPorts: {
            std::optional<std::vector<NamedPort>> ports;
            KVSTORE_RETURN_IF_ERROR(internal::ReadSlice(v, at, ports, ReadNamedPort));
            entry.named_ports = ports.value_or(std::vector<NamedPort>{});
            return absl::OkStatus();
          }
        }
        return absl::OkStatus();
      }));
  if (entry.ip.empty()) return where.Member("IP").Error("is empty");
  if (!key_name.empty() && !internal::EndsWithPath(key_name, entry.GetKeyName())) {
    return where.Member("IP").Error(
        absl::StrCat("the entry's prefix \"", entry.GetKeyName(), "\" does not match the key"));
  }
  *this = std::move(entry);
  return absl::OkStatus();
}

std::unique_ptr<store::LocalKey> IPCacheEntry::DeepKeyCopy() const {
  return std::make_unique<IPCacheEntry>(*this);
}

absl::Status ValidateFromCluster(const IPCacheEntry& entry, std::string_view key,
                                 const ClusterInfo& cluster) {
  if (IsReservedIdentity(entry.id)) return absl::OkStatus();
  const IdentityRange range = ClusterIdentityRange(cluster.id, cluster.max_connected_clusters);
  if (!range.Contains(entry.id)) {
    return Where{key, "ID"}.Error(absl::StrCat(entry.id, " is neither reserved nor within cluster ",
                                               cluster.name, "'s identities [", range.min, ", ",
                                               range.max, "] (cluster ID ", cluster.id, ")"));
  }
  return absl::OkStatus();
}

}  // namespace kvstore::cilium

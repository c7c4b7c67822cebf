#include "kvstore/cilium/node.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "cilium/go_json.h"
#include "cilium/key_names.h"
#include "kvstore/mesh/cluster_config.h"

namespace kvstore::cilium {
namespace {

using internal::Av;
using internal::Json;
using internal::Where;

// The struct's fields, in its order (Go's json.Marshal writes them so).
enum Field : size_t {
  kName,
  kCluster,
  kIPAddresses,
  kIPv4AllocCIDR,
  kIPv4SecondaryAllocCIDRs,
  kIPv6AllocCIDR,
  kIPv6SecondaryAllocCIDRs,
  kIPv4HealthIP,
  kIPv6HealthIP,
  kIPv4IngressIP,
  kIPv6IngressIP,
  kClusterID,
  kSource,
  kEncryptionKey,
  kLabels,
  kAnnotations,
  kNodeIdentity,
  kWireguardPubKey,
  kBootID,
};
constexpr std::string_view kNames[] = {
    "Name",
    "Cluster",
    "IPAddresses",
    "IPv4AllocCIDR",
    "IPv4SecondaryAllocCIDRs",
    "IPv6AllocCIDR",
    "IPv6SecondaryAllocCIDRs",
    "IPv4HealthIP",
    "IPv6HealthIP",
    "IPv4IngressIP",
    "IPv6IngressIP",
    "ClusterID",
    "Source",
    "EncryptionKey",
    "Labels",
    "Annotations",
    "NodeIdentity",
    "WireguardPubKey",
    "BootID",
};

absl::Status ReadAddress(const Json& value, const Where& where, NodeAddress& out) {
  static constexpr std::string_view kAddressNames[] = {"Type", "IP"};
  return internal::DecodeObject(
      value, where, kAddressNames, [&](size_t field, const Json& v, const Where& at) {
        return field == 0 ? internal::ReadString(v, at, out.type) : internal::ReadIP(v, at, out.ip);
      });
}

absl::Status ReadCIDRs(const Json& value, const Where& where,
                       std::optional<std::vector<std::optional<IPNet>>>& out) {
  return internal::ReadSlice(value, where, out,
                             [](const Json& v, const Where& at, std::optional<IPNet>& net) {
                               return internal::ReadIPNet(v, at, net);
                             });
}

absl::Status WriteCIDRs(internal::GoJsonWriter& w, std::string_view field,
                        const std::optional<std::vector<std::optional<IPNet>>>& cidrs) {
  if (!cidrs) {
    w.Null();
    return absl::OkStatus();
  }
  w.BeginArray();
  for (const auto& net : *cidrs) KVSTORE_RETURN_IF_ERROR(internal::WriteIPNet(w, field, net));
  w.EndArray();
  return absl::OkStatus();
}

absl::Status DecodeNode(const Json& value, const Where& where, Node& node) {
  // Whether NodeIdentity is written again depends on whether it was there.
  node.node_identity.reset();
  return internal::DecodeObject(
      value, where, kNames, [&](size_t field, const Json& v, const Where& at) -> absl::Status {
        switch (field) {
          case kName:
            return internal::ReadString(v, at, node.name);
          case kCluster:
            return internal::ReadString(v, at, node.cluster);
          case kIPAddresses:
            return internal::ReadSlice(v, at, node.ip_addresses, ReadAddress);
          case kIPv4AllocCIDR:
            return internal::ReadIPNet(v, at, node.ipv4_alloc_cidr);
          case kIPv4SecondaryAllocCIDRs:
            return ReadCIDRs(v, at, node.ipv4_secondary_alloc_cidrs);
          case kIPv6AllocCIDR:
            return internal::ReadIPNet(v, at, node.ipv6_alloc_cidr);
          case kIPv6SecondaryAllocCIDRs:
            return ReadCIDRs(v, at, node.ipv6_secondary_alloc_cidrs);
          case kIPv4HealthIP:
            return internal::ReadIP(v, at, node.ipv4_health_ip);
          case kIPv6HealthIP:
            return internal::ReadIP(v, at, node.ipv6_health_ip);
          case kIPv4IngressIP:
            return internal::ReadIP(v, at, node.ipv4_ingress_ip);
          case kIPv6IngressIP:
            return internal::ReadIP(v, at, node.ipv6_ingress_ip);
          case kClusterID:
            return internal::ReadUintAs(v, at, node.cluster_id);
          case kSource:
            return internal::ReadString(v, at, node.source);
          case kEncryptionKey:
            return internal::ReadUintAs(v, at, node.encryption_key);
          case kLabels:
            return internal::ReadStringMap(v, at, node.labels);
          case kAnnotations:
            return internal::ReadStringMap(v, at, node.annotations);
          case kNodeIdentity: {
            uint32_t id = node.node_identity.value_or(0);
            KVSTORE_RETURN_IF_ERROR(internal::ReadUintAs(v, at, id));
            node.node_identity = id;
            return absl::OkStatus();
          }
          case kWireguardPubKey:
            return internal::ReadString(v, at, node.wireguard_pub_key);
          case kBootID:
            return internal::ReadString(v, at, node.boot_id);
        }
        return absl::OkStatus();
      });
}

}  // namespace

std::string Node::GetKeyName() const {
  return cluster.empty() ? name : absl::StrCat(cluster, "/", name);
}

absl::StatusOr<std::string> Node::Marshal() const {
  internal::GoJsonWriter w;
  w.BeginObject();
  w.Key(kNames[kName]);
  w.String(name);
  w.Key(kNames[kCluster]);
  w.String(cluster);
  w.Key(kNames[kIPAddresses]);
  if (ip_addresses) {
    w.BeginArray();
    for (const NodeAddress& address : *ip_addresses) {
      w.BeginObject();
      w.Key("Type");
      w.String(address.type);
      w.Key("IP");
      KVSTORE_RETURN_IF_ERROR(internal::WriteIP(w, "IPAddresses", address.ip));
      w.EndObject();
    }
    w.EndArray();
  } else {
    w.Null();
  }
  w.Key(kNames[kIPv4AllocCIDR]);
  KVSTORE_RETURN_IF_ERROR(internal::WriteIPNet(w, "IPv4AllocCIDR", ipv4_alloc_cidr));
  w.Key(kNames[kIPv4SecondaryAllocCIDRs]);
  KVSTORE_RETURN_IF_ERROR(WriteCIDRs(w, "IPv4SecondaryAllocCIDRs", ipv4_secondary_alloc_cidrs));
  w.Key(kNames[kIPv6AllocCIDR]);
  KVSTORE_RETURN_IF_ERROR(internal::WriteIPNet(w, "IPv6AllocCIDR", ipv6_alloc_cidr));
  w.Key(kNames[kIPv6SecondaryAllocCIDRs]);
  KVSTORE_RETURN_IF_ERROR(WriteCIDRs(w, "IPv6SecondaryAllocCIDRs", ipv6_secondary_alloc_cidrs));
  w.Key(kNames[kIPv4HealthIP]);
  KVSTORE_RETURN_IF_ERROR(internal::WriteIP(w, "IPv4HealthIP", ipv4_health_ip));
  w.Key(kNames[kIPv6HealthIP]);
  KVSTORE_RETURN_IF_ERROR(internal::WriteIP(w, "IPv6HealthIP", ipv6_health_ip));
  w.Key(kNames[kIPv4IngressIP]);
  KVSTORE_RETURN_IF_ERROR(internal::WriteIP(w, "IPv4IngressIP", ipv4_ingress_ip));
  w.Key(kNames[kIPv6IngressIP]);
  KVSTORE_RETURN_IF_ERROR(internal::WriteIP(w, "IPv6IngressIP", ipv6_ingress_ip));
  w.Key(kNames[kClusterID]);
  w.Uint(cluster_id);
  w.Key(kNames[kSource]);
  w.String(source);
  w.Key(kNames[kEncryptionKey]);
  w.Uint(encryption_key);
  w.Key(kNames[kLabels]);
  w.StringMap(labels);
  w.Key(kNames[kAnnotations]);
  w.StringMap(annotations);
  if (node_identity) {
    w.Key(kNames[kNodeIdentity]);
    w.Uint(*node_identity);
  }
  w.Key(kNames[kWireguardPubKey]);
  w.String(wireguard_pub_key);
  w.Key(kNames[kBootID]);
  w.String(boot_id);
  w.EndObject();
  return w.Take();
}

absl::Status Node::Unmarshal(std::string_view key, std::string_view data) {
  Json value;
  KVSTORE_RETURN_IF_ERROR(internal::ParseJson(key, data, value));
  const Where where{key, ""};
  Node node;
  KVSTORE_RETURN_IF_ERROR(DecodeNode(value, where, node));
  if (node.name.empty()) return where.Member("Name").Error("is empty");
  if (node.cluster.empty()) return where.Member("Cluster").Error("is empty");
  if (node.cluster_id > kMaxClusterId) {
    return where.Member("ClusterID")
        .Error(absl::StrCat(node.cluster_id, " is above the largest cluster ID, ", kMaxClusterId));
  }
  if (!internal::KeyMatches(key, node.GetKeyName(), node.name)) {
    return where.Member("Name").Error(
        absl::StrCat("the node \"", node.GetKeyName(), "\" does not match the key"));
  }
  *this = std::move(node);
  return absl::OkStatus();
}

std::unique_ptr<store::LocalKey> Node::DeepKeyCopy() const { return std::make_unique<Node>(*this); }

absl::Status ValidateFromCluster(const Node& node, std::string_view key,
                                 const ClusterInfo& cluster) {
  const Where where{key, ""};
  if (node.cluster != cluster.name) {
    return where.Member("Cluster").Error(
        absl::StrCat("\"", node.cluster, "\" is not the cluster's name, \"", cluster.name, "\""));
  }
  if (node.cluster_id != cluster.id) {
    return where.Member("ClusterID")
        .Error(absl::StrCat(node.cluster_id, " is not the cluster's ID, ", cluster.id));
  }
  if (absl::Status status = mesh::ValidateClusterId(cluster.id, cluster.max_connected_clusters);
      !status.ok()) {
    return where.Member("ClusterID").Error(status.message());
  }
  return absl::OkStatus();
}

}  // namespace kvstore::cilium

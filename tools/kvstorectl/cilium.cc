// `kvstorectl cilium`: Cilium's state, decoded with the typed keys of include/kvstore/cilium/, from
// cilium/state/... and from kvstoremesh's cache cilium/cache/.../<cluster>/...; and `check`, which
// checks every value as Cilium's agents check a remote cluster's data.
#include "kvstore/cilium/cilium.h"

#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "commands.h"
#include "kvstore/mesh/cluster_config.h"
#include "kvstore/paths.h"
#include "nlohmann/json.hpp"

namespace kvstorectl {
namespace {

namespace cilium = kvstore::cilium;
using Row = std::vector<std::string>;

// One decoded value.
struct Decoded {
  std::string key;       // the full key
  std::string cluster;   // the cluster it belongs to, when known
  bool cached = false;   // read from kvstoremesh's cache
  Row row;               // the table columns after CLUSTER
  std::string json;      // the object as JSON
  std::string encoding;  // what Marshal writes for it (for check)
};

// Where a kind lives: its state directory, whether that holds one directory per cluster, and its
// cache directory (always per cluster).
struct Kind {
  std::string name;
  std::string state;
  bool state_per_cluster;
  std::string cache;
  Row header;
  // Decodes `value` at `key`; `cluster`, when known with its config, adds the remote checks.
  std::function<absl::Status(const std::string& key, const std::string& value,
                             const std::optional<cilium::ClusterInfo>& cluster, Decoded& out)>
      decode;
};

template <typename T>
absl::Status DecodeAs(const std::string& key, const std::string& value,
                      const std::optional<cilium::ClusterInfo>& cluster, T& object, Decoded& out) {
  if (absl::Status status = object.Unmarshal(key, value); !status.ok()) return status;
  if (cluster) {
    if (absl::Status status = ValidateFromCluster(object, key, *cluster); !status.ok()) {
      return status;
    }
  }
  absl::StatusOr<std::string> encoding = object.Marshal();
  if (!encoding.ok()) return encoding.status();
  out.encoding = *encoding;
  out.json = *encoding;
  return absl::OkStatus();
}

std::string Join(const std::optional<std::vector<cilium::NodeAddress>>& addresses,
                 std::string_view type) {
  std::vector<std::string> ips;
  if (addresses) {
    for (const auto& address : *addresses) {
      if (address.type == type) ips.push_back(address.ip);
    }
  }
  return ips.empty() ? "-" : absl::StrJoin(ips, ",");
}

std::string OrDash(std::string_view s) { return s.empty() ? "-" : std::string(s); }

std::string LabelText(const cilium::Label& label) {
  return label.value.empty() ? absl::StrCat(label.source, ":", label.key)
                             : absl::StrCat(label.source, ":", label.key, "=", label.value);
}

std::vector<Kind> Kinds() {
  std::vector<Kind> kinds;
  kinds.push_back({"nodes",
                   std::string(cilium::kNodesPrefix),
                   true,
                   kvstore::StateToCachePrefix(cilium::kNodesPrefix),
                   {"NAME", "CLUSTER-ID", "INTERNAL-IP", "IPV4-CIDR", "IPV6-CIDR", "SOURCE"},
                   [](const std::string& key, const std::string& value,
                      const std::optional<cilium::ClusterInfo>& cluster, Decoded& out) {
                     cilium::Node node;
                     if (absl::Status s = DecodeAs(key, value, cluster, node, out); !s.ok())
                       return s;
                     out.row = {node.name,
                                absl::StrCat(node.cluster_id),
                                Join(node.ip_addresses, cilium::kNodeInternalIP),
                                node.ipv4_alloc_cidr ? node.ipv4_alloc_cidr->ToString() : "-",
                                node.ipv6_alloc_cidr ? node.ipv6_alloc_cidr->ToString() : "-",
                                OrDash(node.source)};
                     return absl::OkStatus();
                   }});
  kinds.push_back({"identities",
                   kvstore::JoinPath(cilium::kIdentitiesPrefix, "id"),
                   false,
                   kvstore::StateToCachePrefix(cilium::kIdentitiesPrefix),
                   {"ID", "LABELS"},
                   [](const std::string& key, const std::string& value,
                      const std::optional<cilium::ClusterInfo>& cluster, Decoded& out) {
                     cilium::Identity identity;
                     if (absl::Status s = DecodeAs(key, value, cluster, identity, out); !s.ok())
                       return s;
                     std::vector<std::string> labels;
                     for (const auto& label : identity.labels) labels.push_back(LabelText(label));
                     out.row = {absl::StrCat(identity.id), absl::StrJoin(labels, ",")};
                     out.json = nlohmann::json{{"id", identity.id}, {"labels", labels}}.dump();
                     return absl::OkStatus();
                   }});
  kinds.push_back({"ipcache",
                   std::string(cilium::kIPCachePrefix),
                   false,
                   kvstore::StateToCachePrefix("cilium/state/ip/v1"),
                   {"PREFIX", "ID", "HOST-IP", "NAMESPACE", "POD"},
                   [](const std::string& key, const std::string& value,
                      const std::optional<cilium::ClusterInfo>& cluster, Decoded& out) {
                     cilium::IPCacheEntry entry;
                     if (absl::Status s = DecodeAs(key, value, cluster, entry, out); !s.ok())
                       return s;
                     out.row = {entry.GetKeyName(), absl::StrCat(entry.id), OrDash(entry.host_ip),
                                OrDash(entry.k8s_namespace), OrDash(entry.k8s_pod_name)};
                     return absl::OkStatus();
                   }});
  kinds.push_back({"services",
                   std::string(cilium::kServicesPrefix),
                   true,
                   kvstore::StateToCachePrefix(cilium::kServicesPrefix),
                   {"NAMESPACE", "NAME", "CLUSTER-ID", "FRONTENDS", "BACKENDS", "SHARED"},
                   [](const std::string& key, const std::string& value,
                      const std::optional<cilium::ClusterInfo>& cluster, Decoded& out) {
                     cilium::ClusterService svc;
                     if (absl::Status s = DecodeAs(key, value, cluster, svc, out); !s.ok())
                       return s;
                     auto ips = [](const auto& map) {
                       std::vector<std::string> ips;
                       if (map) {
                         for (const auto& [ip, ports] : *map) ips.push_back(ip);
                       }
                       return ips.empty() ? std::string("-") : absl::StrJoin(ips, ",");
                     };
                     out.row = {svc.k8s_namespace,  svc.name,          absl::StrCat(svc.cluster_id),
                                ips(svc.frontends), ips(svc.backends), svc.shared ? "yes" : "no"};
                     return absl::OkStatus();
                   }});
  kinds.push_back({"serviceexports",
                   std::string(cilium::kServiceExportsPrefix),
                   true,
                   kvstore::StateToCachePrefix(cilium::kServiceExportsPrefix),
                   {"NAMESPACE", "NAME", "TYPE", "PORTS", "CREATED"},
                   [](const std::string& key, const std::string& value,
                      const std::optional<cilium::ClusterInfo>& cluster, Decoded& out) {
                     cilium::ServiceExport spec;
                     if (absl::Status s = DecodeAs(key, value, cluster, spec, out); !s.ok())
                       return s;
                     std::vector<std::string> ports;
                     if (spec.ports) {
                       for (const auto& port : *spec.ports) {
                         ports.push_back(absl::StrCat(port.port, "/", OrDash(port.protocol)));
                       }
                     }
                     out.row = {spec.k8s_namespace, spec.name, spec.type,
                                ports.empty() ? "-" : absl::StrJoin(ports, ","),
                                spec.export_creation_timestamp};
                     return absl::OkStatus();
                   }});
  // Checked, not listed: the value/ keys of identities, one per node using an identity (no
  // kvstoremesh cache: kvstoremesh mirrors only the id/ keys).
  kinds.push_back({"identity-values",
                   kvstore::JoinPath(cilium::kIdentitiesPrefix, "value"),
                   false,
                   "",
                   {"ID", "NODE", "LABELS"},
                   [](const std::string& key, const std::string& value,
                      const std::optional<cilium::ClusterInfo>& cluster, Decoded& out) {
                     cilium::IdentityValueKey reference;
                     if (absl::Status s = DecodeAs(key, value, cluster, reference, out); !s.ok())
                       return s;
                     out.row = {absl::StrCat(reference.id), reference.node,
                                cilium::FormatLabels(reference.labels)};
                     out.json = nlohmann::json{{"id", reference.id},
                                               {"node", reference.node},
                                               {"labels", cilium::FormatLabels(reference.labels)}}
                                    .dump();
                     return absl::OkStatus();
                   }});
  return kinds;
}

// A directory to list and how its keys map to clusters.
struct Source {
  std::string prefix;  // listed, with a trailing '/'
  bool cached;
  // The cluster of every key below it (""): unknown, or taken from the key's first element
  // below `prefix` when `cluster_from_key`.
  std::string cluster;
  bool cluster_from_key;
};

std::vector<Source> SourcesOf(const Kind& kind, const std::string& cluster) {
  std::vector<Source> sources;
  if (kind.state_per_cluster) {
    sources.push_back({kvstore::DirectoryPrefix(
                           cluster.empty() ? kind.state : kvstore::JoinPath(kind.state, cluster)),
                       false, cluster, cluster.empty()});
  } else {
    // Without a cluster directory, the state is the cluster's whose etcd this is: --cluster says
    // which one.
    sources.push_back({kvstore::DirectoryPrefix(kind.state), false, cluster, false});
  }
  if (kind.cache.empty()) return sources;
  sources.push_back({kvstore::DirectoryPrefix(
                         cluster.empty() ? kind.cache : kvstore::JoinPath(kind.cache, cluster)),
                     true, cluster, cluster.empty()});
  return sources;
}

struct Reader {
  kvstore::Backend& backend;
  const kvstore::Context& ctx;
  // Cluster configs read so far (nullopt: none there).
  std::map<std::string, std::optional<kvstore::mesh::ClusterConfig>> configs;
  std::vector<std::string> notes;

  std::optional<cilium::ClusterInfo> InfoOf(const std::string& cluster) {
    if (cluster.empty()) return std::nullopt;
    auto it = configs.find(cluster);
    if (it == configs.end()) {
      auto config = kvstore::mesh::GetClusterConfig(ctx, backend, cluster);
      std::optional<kvstore::mesh::ClusterConfig> found;
      if (config.ok()) {
        found = *config;
      }
      if (!config.ok() || !found) {
        notes.push_back(
            absl::StrCat("note: ", kvstore::mesh::ClusterConfigPath(cluster), ": ",
                         config.ok() ? "no cluster config" : std::string(config.status().message()),
                         "; cluster ID and identity ranges of cluster ", cluster, " not checked"));
      }
      it = configs.emplace(cluster, found).first;
    }
    if (!it->second) return std::nullopt;
    return cilium::ClusterInfo::FromConfig(cluster, *it->second);
  }
};

struct Results {
  std::vector<Decoded> decoded;
  std::vector<std::string> problems;  // "<key>: <reason>"
  std::vector<std::string> notes;
  size_t checked = 0;
  size_t encoded_differently = 0;
};

// Reads and decodes every value of `kind`; `check`: with the cluster's checks.
absl::Status ReadKind(Reader& reader, const Kind& kind, const std::string& cluster, bool check,
                      Results& results) {
  for (const Source& source : SourcesOf(kind, cluster)) {
    auto pairs = reader.backend.ListPrefix(reader.ctx, source.prefix);
    if (!pairs.ok()) return pairs.status();
    for (const auto& [key, value] : *pairs) {
      std::string owner = source.cluster;
      const std::string_view below = std::string_view(key).substr(source.prefix.size());
      if (source.cluster_from_key) owner = std::string(below.substr(0, below.find('/')));
      ++results.checked;
      Decoded decoded;
      decoded.key = key;
      decoded.cluster = owner;
      decoded.cached = source.cached;
      std::optional<cilium::ClusterInfo> info;
      if (check) info = reader.InfoOf(owner);
      if (absl::Status status = kind.decode(key, value.data, info, decoded); !status.ok()) {
        results.problems.push_back(std::string(status.message()));
        continue;
      }
      if (decoded.encoding != value.data) {
        ++results.encoded_differently;
        results.notes.push_back(absl::StrCat(
            "note: ", key,
            ": encoded differently (another Cilium version's encoding or fields we do not "
            "know); written back it would be ",
            decoded.encoding.size(), " bytes, not ", value.data.size()));
      }
      results.decoded.push_back(std::move(decoded));
    }
  }
  return absl::OkStatus();
}

void PrintTable(const Kind& kind, const std::vector<Decoded>& decoded) {
  std::vector<Row> rows;
  Row header = {"CLUSTER"};
  header.insert(header.end(), kind.header.begin(), kind.header.end());
  header.push_back("FROM");
  rows.push_back(header);
  for (const Decoded& d : decoded) {
    Row row = {OrDash(d.cluster)};
    row.insert(row.end(), d.row.begin(), d.row.end());
    row.push_back(d.cached ? "cache" : "state");
    rows.push_back(std::move(row));
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const Row& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

struct CiliumOptions {
  std::string cluster;
  std::string output = "table";
};

void AddKindCommand(CLI::App& parent, CommandEnv& env, Kind kind) {
  auto* cmd =
      parent.add_subcommand(kind.name, absl::StrCat("List Cilium's ", kind.name, " (", kind.state,
                                                    "/... and ", kind.cache, "/<cluster>/...)"));
  auto opts = std::make_shared<CiliumOptions>();
  cmd->add_option("--cluster", opts->cluster,
                  "only this cluster's (the cilium/state kinds without a cluster directory, "
                  "identities and ipcache, are taken as its)");
  cmd->add_option("-o,--output", opts->output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  cmd->callback([&env, opts, kind = std::move(kind)] {
    auto backend = env.backend.Open();
    if (!backend.ok()) {
      std::cerr << "error: " << backend.status() << "\n";
      return void(env.exit_code = kExitFailure);
    }
    Reader reader{**backend, env.ctx, {}, {}};
    Results results;
    if (absl::Status status = ReadKind(reader, kind, opts->cluster, false, results); !status.ok()) {
      std::cerr << "error: " << status << "\n";
      return void(env.exit_code = kExitFailure);
    }
    if (opts->output == "json") {
      std::vector<std::string> objects;
      for (const Decoded& d : results.decoded) objects.push_back(d.json);
      std::cout << "[" << absl::StrJoin(objects, ",") << "]\n";
    } else {
      PrintTable(kind, results.decoded);
    }
    for (const std::string& problem : results.problems) std::cerr << "skipped: " << problem << "\n";
    if (!results.problems.empty()) env.exit_code = kExitFailure;
  });
}

void AddCheckCommand(CLI::App& parent, CommandEnv& env) {
  auto* cmd = parent.add_subcommand(
      "check",
      "Check every node, identity, ipcache entry, service and service export as Cilium's agents "
      "check a remote cluster's data (exit 1 when a value fails)");
  cmd->footer(
      "Each value must parse; its cluster name must match its key, its cluster ID and "
      "identities the cluster's config (cilium/cluster-config/<cluster>). One line per problem "
      "(\"problem: ...\"), per value that would be written back differently (\"note: ...\"), "
      "then: checked N values, M problems, K encoded differently");
  auto opts = std::make_shared<CiliumOptions>();
  cmd->add_option("--cluster", opts->cluster, "only this cluster's");
  cmd->callback([&env, opts] {
    auto backend = env.backend.Open();
    if (!backend.ok()) {
      std::cerr << "error: " << backend.status() << "\n";
      return void(env.exit_code = kExitFailure);
    }
    Reader reader{**backend, env.ctx, {}, {}};
    Results results;
    for (const Kind& kind : Kinds()) {
      if (absl::Status status = ReadKind(reader, kind, opts->cluster, true, results);
          !status.ok()) {
        std::cerr << "error: " << status << "\n";
        return void(env.exit_code = kExitFailure);
      }
    }
    for (const std::string& note : reader.notes) std::cout << note << "\n";
    for (const std::string& problem : results.problems) std::cout << "problem: " << problem << "\n";
    for (const std::string& note : results.notes) std::cout << note << "\n";
    std::cout << "checked " << results.checked << " values, " << results.problems.size()
              << " problems, " << results.encoded_differently << " encoded differently\n";
    if (!results.problems.empty()) env.exit_code = kExitFailure;
  });
}

}  // namespace

std::optional<CiliumDecoded> DecodeCiliumValue(const std::string& key, const std::string& value) {
  for (const Kind& kind : Kinds()) {
    if (!key.starts_with(kvstore::DirectoryPrefix(kind.state)) &&
        !key.starts_with(kvstore::DirectoryPrefix(kind.cache))) {
      continue;
    }
    Decoded decoded;
    CiliumDecoded out;
    out.kind = kind.name;
    if (absl::Status status = kind.decode(key, value, std::nullopt, decoded); !status.ok()) {
      out.error = std::string(status.message());
    } else {
      out.summary = absl::StrJoin(decoded.row, " ");
      out.json = decoded.json;
    }
    return out;
  }
  return std::nullopt;
}

void AddCiliumCommand(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand(
      "cilium",
      "Cilium's state decoded: nodes, identities, ipcache, services, serviceexports, check");
  cmd->require_subcommand(1);
  for (Kind& kind : Kinds()) {
    if (kind.name != "identity-values") AddKindCommand(*cmd, env, std::move(kind));
  }
  AddCheckCommand(*cmd, env);
}

}  // namespace kvstorectl

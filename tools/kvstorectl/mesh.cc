// `kvstorectl mesh`: mirrors remote clusters into a target cluster, as Cilium's kvstoremesh does:
// a thin command over kvstore::mesh::Mesh (include/kvstore/mesh/mesh.h), which does the work.
#include "kvstore/mesh/mesh.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "agent_mesh_support.h"
#include "commands.h"
#include "health.h"
#include "kvstore/paths.h"
#include "spdlog/spdlog.h"

namespace kvstorectl {
namespace {

using namespace std::chrono_literals;
using kvstore::mesh::MeshEvent;
using kvstore::mesh::MirroredPrefix;
using kvstore::mesh::RemoteClusterStatus;

constexpr std::string_view kClusterPlaceholder = "<cluster-name>";
// The status loop turns at least this often; /healthz fails when it has not for kStallAfter.
constexpr auto kLoopTurn = 1s;
constexpr auto kStallAfter = 30s;

constexpr char kMeshDescription[] =
    R"(Mirror remote clusters into a target cluster, like Cilium's kvstoremesh.

Many clusters: --clustermesh-config DIR holds one file per remote cluster, named after it, with a
Cilium etcd config YAML (endpoints:, trusted-ca-file:, cert-file:, key-file:, ...). Files added,
changed or removed while running connect, reconnect or remove (drain) that cluster.
One cluster: --cluster-name C with --source-endpoints or --source-etcd-config.

For each remote cluster C, its cluster config cilium/cluster-config/C is read from it and written
to the target (with syncedCanaries and cached set, re-written when deleted there), then Cilium's
layout is mirrored:
  cilium/state/nodes/v1/C/x        -> cilium/cache/nodes/v1/C/x
  cilium/state/services/v1/C/x     -> cilium/cache/services/v1/C/x
  cilium/state/identities/v1/id/x  -> cilium/cache/identities/v1/C/id/x
  cilium/state/ip/v1/default/x     -> cilium/cache/ip/v1/C/x
(a remote whose config says "cached" is read from its cilium/cache/.../C). A remote with
syncedCanaries is mirrored prefix by prefix once its own canaries appear. Once a prefix is
mirrored, the canary cilium/synced/C/cilium/cache/<kind>/v1 is written and a line printed:
  synced SOURCE -> TARGET keys=N
A status line per cluster is printed when its state changes and every --status-interval:
  status C connected=yes ready=yes id=N synced=nodes,... nodes=N services=N identities=N
  endpoints=N failures=N last_error="..."
(-o json: {"event":"synced",...} and {"event":"status","name":..,"connected":..,"ready":..,
"num-nodes":..,"synced":{..},...}). A removed cluster's config is deleted from the target at once
and its cache and canaries after --drain-grace-period ("removed C", then "drained C").
The heartbeat cilium/.heartbeat is written in the target every --heartbeat-interval; a remote
cluster whose own heartbeat was not seen written for --remote-heartbeat-timeout is not ready.

With --prefix P (under cilium/state/; the one-cluster flags only), exactly the given prefixes are
mirrored and no cluster config is read or written: the keys under P/C/ go to
cilium/cache/.../C/ (P with state replaced by cache). --prefix P=SOURCE watches SOURCE instead of
P/C (<cluster-name> in SOURCE is replaced by C). With --wait-source-synced such a prefix is
mirrored only once the source's canary cilium/synced/C/P exists.
Mirrored keys are leased to this process's session: when it stops they expire with the lease, as
with kvstoremesh.)";

struct MeshOptions {
  std::vector<std::string> source_endpoints, target_endpoints;
  std::string source_etcd_config, target_etcd_config;
  std::string cluster_name;
  std::string clustermesh_config;
  std::string local_cluster_name;
  std::vector<std::string> prefixes;
  bool wait_source_synced = false;
  std::string drain_grace_period = "3m";
  std::string heartbeat_interval = "1m";
  std::string remote_heartbeat_timeout = "2m";
  std::string status_interval = "30s";
  std::string metrics_listen;
  std::string metrics_namespace = "cilium_clustermesh";
  std::string output = "text";
};

// What the options mean once checked.
struct MeshPlan {
  std::vector<MirroredPrefix> prefixes;  // the one cluster's explicit prefixes; empty: Cilium's
  std::chrono::milliseconds drain_grace_period{0}, heartbeat_interval{0}, status_interval{0},
      remote_heartbeat_timeout{0};
};

MirroredPrefix ParsePrefix(const std::string& arg, const std::string& cluster) {
  std::string base = arg;
  std::string watch;
  if (size_t equals = arg.find('='); equals != std::string::npos) {
    base = arg.substr(0, equals);
    watch = arg.substr(equals + 1);
    for (size_t at = watch.find(kClusterPlaceholder); at != std::string::npos;
         at = watch.find(kClusterPlaceholder, at + cluster.size())) {
      watch.replace(at, kClusterPlaceholder.size(), cluster);
    }
  }
  while (base.ends_with('/')) base.pop_back();
  while (watch.ends_with('/')) watch.pop_back();
  if (base.empty() || base.starts_with('/') || base.find("//") != std::string::npos) {
    throw CLI::ValidationError("--prefix", "invalid prefix \"" + arg + "\"");
  }
  if (base.size() <= kvstore::kStatePrefix.size() + 1 || !base.starts_with(kvstore::kStatePrefix) ||
      base[kvstore::kStatePrefix.size()] != '/') {
    throw CLI::ValidationError(
        "--prefix", "\"" + base + "\" is not under " + std::string(kvstore::kStatePrefix) +
                        "/ (only state prefixes are mirrored into the cache)");
  }
  if (arg.find('=') != std::string::npos && watch.empty()) {
    throw CLI::ValidationError("--prefix", "empty source prefix in \"" + arg + "\"");
  }
  MirroredPrefix prefix;
  prefix.name = base.substr(kvstore::kStatePrefix.size() + 1);  // nodes/v1
  prefix.source = watch.empty() ? kvstore::JoinPath(base, cluster) : watch;
  prefix.synced_key = kvstore::StateToCachePrefix(base);
  prefix.target = kvstore::JoinPath(prefix.synced_key, cluster);
  prefix.source_synced_key = base;
  return prefix;
}

std::chrono::milliseconds ParseDurationFlag(const std::string& flag, const std::string& text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    throw CLI::ValidationError(flag, "\"" + text + "\" is not a duration (such as 3m, 10s, 500ms)");
  }
  return absl::ToChronoMilliseconds(d);
}

MeshPlan ValidateMeshOptions(const CommandEnv& env, const MeshOptions& opts) {
  if (env.backend.UsesEtcd()) {
    throw CLI::ValidationError(
        "mesh reads --clustermesh-config or --source-endpoints/--source-etcd-config and writes "
        "--target-endpoints/--target-etcd-config; --endpoints/--etcd-config do not apply");
  }
  const bool one_cluster = !opts.source_endpoints.empty() || !opts.source_etcd_config.empty();
  if (!one_cluster && opts.clustermesh_config.empty()) {
    throw CLI::ValidationError(
        "mesh needs a source: --clustermesh-config DIR, or --source-endpoints or "
        "--source-etcd-config with --cluster-name");
  }
  if (opts.target_endpoints.empty() && opts.target_etcd_config.empty()) {
    throw CLI::ValidationError("mesh needs a target: --target-endpoints or --target-etcd-config");
  }
  if (one_cluster && opts.cluster_name.empty()) {
    throw CLI::ValidationError(
        "--cluster-name is required with --source-endpoints or "
        "--source-etcd-config: it names the source cluster");
  }
  if (!one_cluster &&
      (!opts.cluster_name.empty() || !opts.prefixes.empty() || opts.wait_source_synced)) {
    throw CLI::ValidationError(
        "--cluster-name, --prefix and --wait-source-synced describe the one source cluster of "
        "--source-endpoints/--source-etcd-config");
  }
  const std::string& cluster = opts.cluster_name;
  if (one_cluster) {
    // Explicit prefixes keep the looser rule this command always had; Cilium's layout needs a
    // name Cilium accepts.
    if (cluster.find('/') != std::string::npos) {
      throw CLI::ValidationError("--cluster-name", "must be non-empty and without '/'");
    }
    for (char c : cluster) {
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
        throw CLI::ValidationError("--cluster-name",
                                   "must not contain spaces or control characters");
      }
    }
    if (opts.prefixes.empty()) {
      if (absl::Status valid = kvstore::mesh::ValidateClusterName(cluster); !valid.ok()) {
        throw CLI::ValidationError("--cluster-name", std::string(valid.message()));
      }
    }
  }
  if (!opts.local_cluster_name.empty()) {
    if (absl::Status valid = kvstore::mesh::ValidateClusterName(opts.local_cluster_name);
        !valid.ok()) {
      throw CLI::ValidationError("--local-cluster-name", std::string(valid.message()));
    }
  }
  ValidateMetricsListen(opts.metrics_listen);
  MeshPlan plan;
  std::set<std::string> seen;
  for (const std::string& arg : opts.prefixes) {
    MirroredPrefix prefix = ParsePrefix(arg, cluster);
    if (!seen.insert(prefix.source_synced_key).second) {
      throw CLI::ValidationError("--prefix", "\"" + prefix.source_synced_key + "\" given twice");
    }
    plan.prefixes.push_back(std::move(prefix));
  }
  plan.drain_grace_period = ParseDurationFlag("--drain-grace-period", opts.drain_grace_period);
  plan.heartbeat_interval = ParseDurationFlag("--heartbeat-interval", opts.heartbeat_interval);
  plan.status_interval = ParseDurationFlag("--status-interval", opts.status_interval);
  plan.remote_heartbeat_timeout =
      ParseDurationFlag("--remote-heartbeat-timeout", opts.remote_heartbeat_timeout);
  return plan;
}

// The mirrored keys of `status` by kind, with Cilium's status names.
uint64_t KeysOf(const RemoteClusterStatus& status, std::string_view kind) {
  for (const auto& prefix : status.prefixes) {
    if (prefix.name == kind) return prefix.keys;
  }
  return 0;
}

std::string StatusText(const RemoteClusterStatus& status) {
  std::vector<std::string> synced;
  std::string keys;
  for (const auto& prefix : status.prefixes) {
    if (prefix.synced) synced.push_back(prefix.name);
    keys += " " + prefix.name + "=" + std::to_string(prefix.keys);
  }
  std::string line = "status " + status.name + " connected=" + (status.connected ? "yes" : "no") +
                     " ready=" + (status.ready ? "yes" : "no");
  if (status.draining) line += " draining=yes";
  if (status.config.has_value()) line += " id=" + std::to_string(status.config->id);
  line += " synced=" + (synced.empty() ? std::string("-") : absl::StrJoin(synced, ",")) + keys +
          " failures=" + std::to_string(status.failures) + " last_error=\"" +
          EscapeForLine(status.last_error) + "\"";
  return line;
}

// Cilium's models.RemoteCluster field names, where they exist.
nlohmann::json StatusJson(const RemoteClusterStatus& status) {
  nlohmann::json synced = nlohmann::json::object();
  for (const auto& prefix : status.prefixes) synced[prefix.name] = prefix.synced;
  nlohmann::json line = {{"event", "status"},
                         {"name", status.name},
                         {"connected", status.connected},
                         {"ready", status.ready},
                         {"draining", status.draining},
                         {"status", status.status},
                         {"num-failures", status.failures},
                         {"last-error", status.last_error},
                         {"num-nodes", KeysOf(status, "nodes")},
                         {"num-shared-services", KeysOf(status, "services")},
                         {"num-identities", KeysOf(status, "identities")},
                         {"num-endpoints", KeysOf(status, "endpoints")},
                         {"synced", synced}};
  if (status.last_failure.has_value()) {
    line["last-failure"] = absl::FormatTime(
        absl::RFC3339_sec, absl::FromChrono(*status.last_failure), absl::UTCTimeZone());
  }
  if (!status.watches.empty()) {
    line["watches"] = WatchesJson(status.watches, std::chrono::system_clock::now());
  }
  if (status.last_heartbeat.has_value()) {
    line["last-heartbeat"] = absl::FormatTime(
        absl::RFC3339_sec, absl::FromChrono(*status.last_heartbeat), absl::UTCTimeZone());
  }
  if (status.config.has_value()) {
    const auto& caps = status.config->capabilities;
    line["config"] = {{"cluster-id", status.config->id},
                      {"kvstoremesh", caps.cached},
                      {"sync-canaries", caps.synced_canaries}};
    if (caps.service_exports_enabled.has_value()) {
      line["config"]["service-exports-enabled"] = *caps.service_exports_enabled;
    }
  }
  return line;
}

class MeshPrinter {
 public:
  MeshPrinter(std::shared_ptr<Output> output, bool json)
      : output_(std::move(output)), json_(json) {}

  void PrintStatus(const RemoteClusterStatus& status) const {
    output_->PrintLine(json_ ? DumpJsonLine(StatusJson(status)) : StatusText(status));
  }

  void PrintError(const MeshEvent& event) const {
    output_->PrintLine(
        json_ ? DumpJsonLine({{"event", "error"}, {"name", event.cluster}, {"error", event.error}})
              : "error " + event.cluster + ": " + EscapeForLine(event.error));
  }

  void PrintEvent(const MeshEvent& event) const {
    if (event.type == MeshEvent::Type::kPrefixSynced && event.prefix.has_value()) {
      const auto& prefix = *event.prefix;
      if (json_) {
        output_->PrintLine(DumpJsonLine({{"event", "synced"},
                                         {"cluster", event.cluster},
                                         {"source", prefix.source},
                                         {"target", prefix.target},
                                         {"canary", prefix.canary},
                                         {"keys", prefix.keys}}));
      } else {
        output_->PrintLine("synced " + prefix.source + " -> " + prefix.target +
                           " keys=" + std::to_string(prefix.keys));
      }
    } else if (event.type == MeshEvent::Type::kRemoved || event.type == MeshEvent::Type::kDrained) {
      const char* what = event.type == MeshEvent::Type::kRemoved ? "removed" : "drained";
      output_->PrintLine(json_ ? DumpJsonLine({{"event", what}, {"cluster", event.cluster}})
                               : std::string(what) + " " + event.cluster);
    }
  }

 private:
  const std::shared_ptr<Output> output_;
  const bool json_;
};

absl::StatusOr<std::shared_ptr<kvstore::Backend>> OpenCluster(std::vector<std::string> endpoints,
                                                              std::string etcd_config,
                                                              MetricsServer* metrics) {
  BackendFlags flags;
  flags.endpoints = std::move(endpoints);
  flags.etcd_config = std::move(etcd_config);
  OpenOptions options;
  if (metrics != nullptr) options.metrics = metrics->metrics();
  return flags.Open(options);
}

std::string ProgressText(const std::vector<RemoteClusterStatus>& statuses) {
  std::string text = "[mesh]";
  for (const auto& status : statuses) {
    uint64_t keys = 0;
    size_t synced = 0;
    for (const auto& prefix : status.prefixes) {
      keys += prefix.keys;
      synced += prefix.synced ? 1 : 0;
    }
    text += " " + status.name + ": " +
            (status.draining    ? "draining"
             : status.ready     ? "ready"
             : status.connected ? "syncing " + std::to_string(synced) + "/" +
                                      std::to_string(status.prefixes.size())
                                : "connecting") +
            " keys=" + std::to_string(keys);
  }
  return text;
}

int RunMesh(CommandEnv& env, const MeshOptions& opts, MeshPlan plan) {
  const bool json = opts.output == "json";
  auto output = std::make_shared<Output>();
  auto started = StartMetrics(opts.metrics_listen);
  if (!started.ok()) {
    std::cerr << "error: " << started.status().message() << "\n";
    return kExitFailure;
  }
  std::unique_ptr<MetricsServer> metrics = *std::move(started);
  auto target = OpenCluster(opts.target_endpoints, opts.target_etcd_config, metrics.get());
  if (!target.ok()) {
    std::cerr << "error: target cluster: " << target.status() << "\n";
    return kExitFailure;
  }
  std::shared_ptr<kvstore::Backend> source;
  if (!opts.source_endpoints.empty() || !opts.source_etcd_config.empty()) {
    auto opened = OpenCluster(opts.source_endpoints, opts.source_etcd_config, metrics.get());
    if (!opened.ok()) {
      std::cerr << "error: source cluster: " << opened.status() << "\n";
      (*target)->Close();
      return kExitFailure;
    }
    source = *std::move(opened);
  }

  auto printer = std::make_shared<MeshPrinter>(output, json);
  kvstore::mesh::Mesh* mesh_ptr = nullptr;  // set before any event can arrive
  kvstore::mesh::MeshOptions mesh_options;
  mesh_options.target = *target;
  mesh_options.config_directory = opts.clustermesh_config;
  mesh_options.local_cluster_name = opts.local_cluster_name;
  mesh_options.drain_grace_period = plan.drain_grace_period;
  mesh_options.heartbeat_interval = plan.heartbeat_interval;
  mesh_options.remote_heartbeat_timeout = plan.remote_heartbeat_timeout;
  mesh_options.metrics_namespace = opts.metrics_namespace;
  if (metrics) {
    mesh_options.metrics = metrics->metrics();
    mesh_options.registry = &metrics->registry();
  }
  // A status line for each change of a cluster's state, except on its way to the first ready:
  // the synced lines tell that, and the status follows once ready. Failures are always told.
  auto was_ready = std::make_shared<std::set<std::string>>();  // touched by on_event only
  mesh_options.on_event = [printer, was_ready, &mesh_ptr](const MeshEvent& event) {
    printer->PrintEvent(event);
    if (mesh_ptr == nullptr) return;
    bool known = false;
    for (const RemoteClusterStatus& status : mesh_ptr->Status()) {
      if (status.name != event.cluster) continue;
      known = true;
      bool print = true;
      if (event.type == MeshEvent::Type::kConnected ||
          event.type == MeshEvent::Type::kPrefixSynced) {
        print = status.ready || was_ready->contains(status.name);
      }
      if (status.ready) was_ready->insert(status.name);
      if (print) printer->PrintStatus(status);
    }
    // A cluster the mesh would not take (a config file with a bad name): its error alone.
    if (!known && event.type == MeshEvent::Type::kFailure) printer->PrintError(event);
  };
  absl::StatusOr<std::unique_ptr<kvstore::mesh::Mesh>> mesh =
      kvstore::mesh::Mesh::New(std::move(mesh_options));
  if (!mesh.ok()) {
    std::cerr << "error: " << mesh.status().message() << "\n";
    if (source) source->Close();
    (*target)->Close();
    return kExitFailure;
  }
  mesh_ptr = mesh->get();
  // /healthz: the status loop below turns and the mesh still runs; /readyz: every remote
  // cluster is ready.
  LoopMonitor loop("mesh status loop", kStallAfter);
  std::atomic<bool> mesh_running{true};
  if (metrics) {
    metrics->SetHealthChecks(
        [&loop, &mesh_running] {
          HealthReport report = loop.Check();
          if (mesh_running.load()) return Combine(report, {true, "mesh: running\n"});
          return Combine(report, {false, "mesh: stopped running\n"});
        },
        [mesh = mesh_ptr] { return MeshReadiness(mesh->Status()); });
    // /status: every remote cluster's status line of `-o json`.
    metrics->SetStatusReport([mesh = mesh_ptr] {
      const std::vector<RemoteClusterStatus> clusters = mesh->Status();
      nlohmann::json lines = nlohmann::json::array();
      for (const RemoteClusterStatus& status : clusters) lines.push_back(StatusJson(status));
      return nlohmann::json{{"ready", MeshReadiness(clusters).ok}, {"clusters", std::move(lines)}};
    });
  }
  absl::Cleanup stop_checks = [&metrics] {
    if (metrics) metrics->StopHealthChecks();
  };
  if (source) {
    kvstore::mesh::RemoteCluster cluster;
    cluster.name = opts.cluster_name;
    cluster.backend = source;
    cluster.prefixes = plan.prefixes;
    cluster.wait_source_synced = opts.wait_source_synced;
    if (absl::Status status = (*mesh)->AddCluster(std::move(cluster)); !status.ok()) {
      std::cerr << "error: " << status.message() << "\n";
      source->Close();
      (*target)->Close();
      return kExitFailure;
    }
  }

  spdlog::info("mesh starting clusters_dir={} one_cluster={} drain_grace_period={}ms",
               opts.clustermesh_config, opts.cluster_name, plan.drain_grace_period.count());
  std::thread runner([&] {
    pthread_setname_np(pthread_self(), "kvctl-mesh-run");
    (*mesh)->Run(env.ctx);
    mesh_running = false;
  });
  const auto tick = output->Interactive() ? 500ms : std::chrono::milliseconds(0);
  auto next_status = std::chrono::steady_clock::now() + plan.status_interval;
  while (!env.ctx.Done()) {
    auto wait = plan.status_interval > 0ms ? next_status - std::chrono::steady_clock::now()
                                           : std::chrono::steady_clock::duration(1h);
    if (tick > 0ms) wait = std::min<std::chrono::steady_clock::duration>(wait, tick);
    // Each turn reads the mesh's status: a mesh stuck on its own lock stalls the loop too.
    wait = std::min<std::chrono::steady_clock::duration>(wait, kLoopTurn);
    loop.Turned();
    if (env.ctx.WaitFor(std::max<std::chrono::steady_clock::duration>(wait, 0ms))) break;
    std::vector<RemoteClusterStatus> statuses = (*mesh)->Status();
    if (tick > 0ms) output->SetProgress(ProgressText(statuses));
    if (plan.status_interval > 0ms && std::chrono::steady_clock::now() >= next_status) {
      for (const auto& status : statuses) printer->PrintStatus(status);
      next_status = std::chrono::steady_clock::now() + plan.status_interval;
    }
  }
  runner.join();
  output->ClearProgress();
  if (metrics) metrics->StopHealthChecks();
  mesh_ptr = nullptr;
  mesh->reset();
  spdlog::info("mesh stopped");
  if (source) source->Close();
  (*target)->Close();
  return kExitOk;
}

}  // namespace

void AddMeshCommand(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand(
      "mesh", "Mirror remote clusters into a target cluster (Cilium's kvstoremesh)");
  cmd->footer(kMeshDescription);
  auto opts = std::make_shared<MeshOptions>();
  cmd->add_option("--clustermesh-config", opts->clustermesh_config,
                  "directory with one Cilium etcd config file per remote cluster, named after it")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--source-endpoints", opts->source_endpoints,
                  "etcd endpoints of the one source cluster (comma-separated)")
      ->delimiter(',');
  cmd->add_option("--source-etcd-config", opts->source_etcd_config,
                  "Cilium-style etcd config YAML of the one source cluster")
      ->check(CLI::ExistingFile);
  cmd->add_option("--target-endpoints", opts->target_endpoints,
                  "etcd endpoints of the target cluster (comma-separated)")
      ->delimiter(',');
  cmd->add_option("--target-etcd-config", opts->target_etcd_config,
                  "Cilium-style etcd config YAML of the target cluster")
      ->check(CLI::ExistingFile);
  cmd->add_option("--cluster-name", opts->cluster_name, "name of the one source cluster");
  cmd->add_option("--local-cluster-name", opts->local_cluster_name,
                  "name of the target's own cluster: its file in --clustermesh-config is "
                  "ignored; the source_cluster label of the mesh metrics");
  cmd->add_option("--prefix", opts->prefixes,
                  "one-cluster mode: state prefix to mirror instead of Cilium's layout, e.g. "
                  "cilium/state/nodes/v1 (repeatable; P=SOURCE watches SOURCE instead of "
                  "P/<cluster>)");
  cmd->add_flag("--wait-source-synced", opts->wait_source_synced,
                "with --prefix: mirror a prefix only once the source's canary "
                "cilium/synced/<cluster>/<prefix> exists");
  cmd->add_option("--drain-grace-period", opts->drain_grace_period,
                  "how long a removed cluster's keys stay in the target")
      ->capture_default_str();
  cmd->add_option("--heartbeat-interval", opts->heartbeat_interval,
                  "how often cilium/.heartbeat is written in the target (0: never)")
      ->capture_default_str();
  cmd->add_option("--remote-heartbeat-timeout", opts->remote_heartbeat_timeout,
                  "a remote cluster whose cilium/.heartbeat was not written for this long is "
                  "not ready (0: not checked)")
      ->capture_default_str();
  cmd->add_option("--status-interval", opts->status_interval,
                  "how often a status line per cluster is printed besides on changes (0: only "
                  "on changes)")
      ->capture_default_str();
  cmd->add_option("--metrics-listen", opts->metrics_listen,
                  "serve Prometheus metrics at HOST:PORT/metrics, and /healthz and /readyz "
                  "(200 or 503, the reasons in the body) (port 0: any free port; a bare port "
                  "binds to 127.0.0.1); off by default");
  cmd->add_option("--metrics-namespace", opts->metrics_namespace,
                  "prefix of the remote cluster metrics (cilium_kvstoremesh as kvstoremesh)")
      ->capture_default_str();
  cmd->add_option("-o,--output", opts->output, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->callback([&env, opts] {
    MeshPlan plan = ValidateMeshOptions(env, *opts);
    env.exit_code = RunMesh(env, *opts, std::move(plan));
  });
}

}  // namespace kvstorectl

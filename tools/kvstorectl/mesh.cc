// `kvstorectl mesh`: mirrors state prefixes of a source cluster into the cache prefixes of a target
// cluster, as Cilium's kvstoremesh does. Per prefix, a RestartableWatchStore on the source feeds
// a WorkqueueSyncStore on the target, which writes the synced canary once the first list is
// mirrored.
#include <atomic>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent_mesh_support.h"
#include "commands.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "kvstore/store/watch_store_manager.h"
#include "spdlog/spdlog.h"

namespace kvstorectl {
namespace {

using namespace std::chrono_literals;

// A watch that ended on its own (not through the context) is started again after this back-off;
// one that lasted kHealthyWatch resets it.
constexpr auto kRewatchBase = 500ms;
constexpr auto kRewatchMax = 30s;
constexpr auto kHealthyWatch = 60s;
constexpr std::string_view kClusterPlaceholder = "<cluster-name>";

constexpr char kMeshDescription[] =
    R"(Mirror prefixes of a source cluster into a target cluster, like Cilium's kvstoremesh.

For --prefix P (which must start with cilium/state/) and --cluster-name C, the keys under P/C/ in
the source are written under cilium/cache/.../C/ in the target (P with state replaced by cache):
  source cilium/state/nodes/v1/C/node1  ->  target cilium/cache/nodes/v1/C/node1
--prefix P=SOURCE watches SOURCE instead of P/C (<cluster-name> in SOURCE is replaced by C), e.g.
--prefix 'cilium/state/identities/v1=cilium/state/identities/v1/id'.
Once the first list of a prefix is mirrored, the canary cilium/synced/C/<cache prefix>
(e.g. cilium/synced/C/cilium/cache/nodes/v1) is written with the time, and a line is printed:
  synced SOURCE -> TARGET keys=N
(-o json: {"event":"synced","source":..,"target":..,"canary":..,"keys":N}).
Keys deleted at the source are deleted in the target, also when they vanish while the source is
unreachable. Mirrored keys are leased to this process's session: when it stops they expire with
the lease (TTL), as with kvstoremesh. With --wait-source-synced a prefix is mirrored only once the
source's own canary cilium/synced/C/P exists.)";

struct MeshOptions {
  std::vector<std::string> source_endpoints, target_endpoints;
  std::string source_etcd_config, target_etcd_config;
  std::string cluster_name;
  std::vector<std::string> prefixes;
  bool wait_source_synced = false;
  std::string metrics_listen;
  std::string output = "text";
};

// One mirrored prefix: where it is read and where it is written.
struct MirrorSpec {
  std::string base_prefix;   // cilium/state/nodes/v1
  std::string watch_prefix;  // cilium/state/nodes/v1/C
  std::string cache_prefix;  // cilium/cache/nodes/v1/C
  std::string canary_key;    // cilium/cache/nodes/v1 (under cilium/synced/C/)
};

MirrorSpec ParsePrefix(const std::string& arg, const std::string& cluster) {
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
  MirrorSpec spec;
  spec.base_prefix = base;
  spec.watch_prefix = watch.empty() ? kvstore::JoinPath(base, cluster) : watch;
  spec.canary_key = kvstore::StateToCachePrefix(base);
  spec.cache_prefix = kvstore::JoinPath(spec.canary_key, cluster);
  return spec;
}

std::vector<MirrorSpec> ValidateMeshOptions(const CommandEnv& env, const MeshOptions& opts) {
  if (env.backend.UsesEtcd()) {
    throw CLI::ValidationError(
        "mesh reads --source-endpoints/--source-etcd-config and writes "
        "--target-endpoints/--target-etcd-config; --endpoints/--etcd-config do not apply");
  }
  if (opts.source_endpoints.empty() && opts.source_etcd_config.empty()) {
    throw CLI::ValidationError("mesh needs a source: --source-endpoints or --source-etcd-config");
  }
  if (opts.target_endpoints.empty() && opts.target_etcd_config.empty()) {
    throw CLI::ValidationError("mesh needs a target: --target-endpoints or --target-etcd-config");
  }
  const std::string& cluster = opts.cluster_name;
  if (cluster.empty() || cluster.find('/') != std::string::npos) {
    throw CLI::ValidationError("--cluster-name", "must be non-empty and without '/'");
  }
  for (char c : cluster) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      throw CLI::ValidationError("--cluster-name", "must not contain spaces or control characters");
    }
  }
  ValidateMetricsListen(opts.metrics_listen);
  std::vector<MirrorSpec> specs;
  std::set<std::string> seen;
  for (const std::string& arg : opts.prefixes) {
    MirrorSpec spec = ParsePrefix(arg, cluster);
    if (!seen.insert(spec.base_prefix).second) {
      throw CLI::ValidationError("--prefix", "\"" + spec.base_prefix + "\" given twice");
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

// Feeds what the source's watch store observes into the target's sync store.
class MirrorObserver : public kvstore::store::Observer {
 public:
  MirrorObserver(kvstore::store::SyncStore& sync, std::string cluster, std::string prefix)
      : sync_(sync), cluster_(std::move(cluster)), prefix_(std::move(prefix)) {}

  void OnUpdate(const kvstore::store::Key& key) override {
    spdlog::debug("mirroring update cluster={} prefix={} key={}", cluster_, prefix_,
                  key.GetKeyName());
    if (absl::Status status = sync_.UpsertKey(kvstore::Context::Background(), key); !status.ok()) {
      spdlog::warn("cannot mirror update cluster={} prefix={} key={} error={}", cluster_, prefix_,
                   key.GetKeyName(), status.ToString());
    }
  }

  void OnDelete(const kvstore::store::NamedKey& key) override {
    spdlog::debug("mirroring delete cluster={} prefix={} key={}", cluster_, prefix_,
                  key.GetKeyName());
    if (absl::Status status = sync_.DeleteKey(kvstore::Context::Background(), key); !status.ok()) {
      spdlog::warn("cannot mirror delete cluster={} prefix={} key={} error={}", cluster_, prefix_,
                   key.GetKeyName(), status.ToString());
    }
  }

 private:
  kvstore::store::SyncStore& sync_;
  const std::string cluster_;
  const std::string prefix_;
};

struct Mirror {
  MirrorSpec spec;
  std::unique_ptr<kvstore::store::SyncStore> sync;
  std::unique_ptr<kvstore::store::WatchStore> watch;
  std::atomic<bool> synced = false;  // the target's canary was written
};

// Watches the source until `ctx` is done, watching again with back-off whenever the watch ends by
// itself. The watch store turns keys that vanished meanwhile into deletes when it re-lists.
void WatchSource(const kvstore::Context& ctx, Mirror& mirror, kvstore::WatchStoreBackend& source,
                 const std::string& cluster) {
  Backoff backoff(kRewatchBase, kRewatchMax);
  while (!ctx.Done()) {
    spdlog::info("watching source cluster={} prefix={} target={}", cluster,
                 mirror.spec.watch_prefix, mirror.spec.cache_prefix);
    auto started = std::chrono::steady_clock::now();
    mirror.watch->Watch(ctx, source, mirror.spec.watch_prefix);
    if (ctx.Done()) break;
    if (std::chrono::steady_clock::now() - started > kHealthyWatch) backoff.Reset();
    auto wait = backoff.Next();
    spdlog::warn("source watch ended, watching again cluster={} prefix={} retry_in={}ms", cluster,
                 mirror.spec.watch_prefix, wait.count());
    ctx.WaitFor(wait);
  }
}

std::string ProgressText(const std::vector<std::unique_ptr<Mirror>>& mirrors,
                         const std::string& cluster) {
  std::string text = "[mesh " + cluster + "]";
  for (const auto& mirror : mirrors) {
    text += " " + kvstore::GetScopeFromKey(mirror->spec.base_prefix) + ": " +
            std::to_string(mirror->watch->NumEntries()) +
            (mirror->synced            ? " synced"
             : mirror->watch->Synced() ? " writing"
                                       : " listing");
  }
  return text;
}

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

int RunMesh(CommandEnv& env, const MeshOptions& opts, std::vector<MirrorSpec> specs) {
  const std::string& cluster = opts.cluster_name;
  const bool json = opts.output == "json";
  auto output = std::make_shared<Output>();
  auto started = StartMetrics(opts.metrics_listen);
  if (!started.ok()) {
    std::cerr << "error: " << started.status().message() << "\n";
    return kExitFailure;
  }
  std::unique_ptr<MetricsServer> metrics = *std::move(started);
  auto source = OpenCluster(opts.source_endpoints, opts.source_etcd_config, metrics.get());
  if (!source.ok()) {
    std::cerr << "error: source cluster: " << source.status() << "\n";
    return kExitFailure;
  }
  auto target = OpenCluster(opts.target_endpoints, opts.target_etcd_config, metrics.get());
  if (!target.ok()) {
    std::cerr << "error: target cluster: " << target.status() << "\n";
    (*source)->Close();
    return kExitFailure;
  }

  std::vector<std::unique_ptr<Mirror>> mirrors;
  for (MirrorSpec& spec : specs) {
    auto mirror = std::make_unique<Mirror>();
    mirror->spec = std::move(spec);
    kvstore::store::WorkqueueSyncStoreOptions sync_options;
    sync_options.synced_key_override = mirror->spec.canary_key;
    if (metrics) sync_options.metrics = metrics->metrics();
    mirror->sync = kvstore::store::NewWorkqueueSyncStore(cluster, *target,
                                                         mirror->spec.cache_prefix, sync_options);
    auto observer =
        std::make_shared<MirrorObserver>(*mirror->sync, cluster, mirror->spec.watch_prefix);

    kvstore::store::RestartableWatchStoreOptions watch_options;
    if (metrics) watch_options.metrics = metrics->metrics();
    Mirror* raw = mirror.get();
    watch_options.on_sync_callbacks.push_back(
        [raw, output, json, cluster](const kvstore::Context& ctx) {
          auto on_canary = [raw, output, json, cluster](const kvstore::Context&) {
            raw->synced = true;
            const MirrorSpec& spec = raw->spec;
            std::string canary = kvstore::SyncedKeyPath(cluster, spec.canary_key);
            uint64_t keys = raw->watch->NumEntries();
            spdlog::info("prefix mirrored cluster={} prefix={} target={} canary={} keys={}",
                         cluster, spec.watch_prefix, spec.cache_prefix, canary, keys);
            if (json) {
              output->PrintLine(DumpJsonLine({{"event", "synced"},
                                              {"cluster", cluster},
                                              {"source", spec.watch_prefix},
                                              {"target", spec.cache_prefix},
                                              {"canary", canary},
                                              {"keys", keys}}));
            } else {
              output->PrintLine("synced " + spec.watch_prefix + " -> " + spec.cache_prefix +
                                " keys=" + std::to_string(keys));
            }
          };
          if (absl::Status status = raw->sync->Synced(ctx, {on_canary}); !status.ok()) {
            spdlog::error("cannot mark prefix synced cluster={} prefix={} error={}", cluster,
                          raw->spec.cache_prefix, status.ToString());
          }
        });
    mirror->watch = kvstore::store::NewRestartableWatchStore(cluster, kvstore::store::KVPairCreator,
                                                             observer, std::move(watch_options));
    mirrors.push_back(std::move(mirror));
  }

  std::unique_ptr<kvstore::store::WatchStoreManager> manager =
      opts.wait_source_synced ? kvstore::store::NewWatchStoreManagerSync(*source, cluster)
                              : kvstore::store::NewWatchStoreManagerImmediate(cluster);
  kvstore::WatchStoreBackend& source_backend = **source;
  for (auto& mirror : mirrors) {
    Mirror* raw = mirror.get();
    manager->Register(raw->spec.base_prefix,
                      [raw, &source_backend, &cluster](const kvstore::Context& ctx) {
                        WatchSource(ctx, *raw, source_backend, cluster);
                      });
  }

  spdlog::info("mesh starting cluster={} prefixes={} wait_source_synced={}", cluster,
               mirrors.size(), opts.wait_source_synced);
  std::vector<std::thread> threads;
  for (auto& mirror : mirrors) {
    threads.emplace_back([&env, raw = mirror.get()] { raw->sync->Run(env.ctx); });
  }
  threads.emplace_back([&env, &manager] { manager->Run(env.ctx); });
  if (output->Interactive()) {
    while (!env.ctx.WaitFor(500ms)) output->SetProgress(ProgressText(mirrors, cluster));
  } else {
    env.ctx.Wait();
  }
  for (auto& thread : threads) thread.join();
  output->ClearProgress();
  spdlog::info("mesh stopped cluster={}", cluster);
  (*source)->Close();
  (*target)->Close();
  return kExitOk;
}

}  // namespace

void AddMeshCommand(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand(
      "mesh", "Mirror state prefixes of a source cluster into a target cluster (kvstoremesh)");
  cmd->footer(kMeshDescription);
  auto opts = std::make_shared<MeshOptions>();
  cmd->add_option("--source-endpoints", opts->source_endpoints,
                  "etcd endpoints of the source cluster (comma-separated)")
      ->delimiter(',');
  cmd->add_option("--source-etcd-config", opts->source_etcd_config,
                  "Cilium-style etcd config YAML of the source cluster")
      ->check(CLI::ExistingFile);
  cmd->add_option("--target-endpoints", opts->target_endpoints,
                  "etcd endpoints of the target cluster (comma-separated)")
      ->delimiter(',');
  cmd->add_option("--target-etcd-config", opts->target_etcd_config,
                  "Cilium-style etcd config YAML of the target cluster")
      ->check(CLI::ExistingFile);
  cmd->add_option("--cluster-name", opts->cluster_name, "name of the source cluster")->required();
  cmd->add_option("--prefix", opts->prefixes,
                  "state prefix to mirror, e.g. cilium/state/nodes/v1 (repeatable; P=SOURCE "
                  "watches SOURCE instead of P/<cluster>)")
      ->required();
  cmd->add_flag("--wait-source-synced", opts->wait_source_synced,
                "mirror a prefix only once the source's canary cilium/synced/<cluster>/<prefix> "
                "exists");
  cmd->add_option("--metrics-listen", opts->metrics_listen,
                  "serve Prometheus metrics at HOST:PORT/metrics (port 0: any free port; "
                  "a bare port binds to 127.0.0.1); off by default");
  cmd->add_option("-o,--output", opts->output, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->callback([&env, opts] {
    std::vector<MirrorSpec> specs = ValidateMeshOptions(env, *opts);
    env.exit_code = RunMesh(env, *opts, std::move(specs));
  });
}

}  // namespace kvstorectl

// `kvstorectl bench WORKLOAD`: measures one workload and prints one result line (BENCHMARKS.md).
#include <iostream>
#include <memory>
#include <string>

#include "bench_support.h"
#include "bench_workloads.h"
#include "commands.h"
#include "kvstore/backend.h"

namespace kvstorectl {
namespace {

using bench::BenchConfig;
using bench::BenchOutcome;

using Workload = absl::StatusOr<BenchOutcome> (*)(const BenchConfig&);

// The flags of one workload; the fields a workload does not use keep their defaults.
struct Options {
  BenchConfig config;
  std::string prefix = "cilium/state/bench/v1";
  int64_t keys = 10000;
  size_t value_size = 256;
  double timeout_seconds = 600;
  bool quiet = false;
};

CLI::App* AddWorkload(CLI::App& bench, CommandEnv& env, const std::string& name,
                      const std::string& description, Workload run,
                      const std::shared_ptr<Options>& opts) {
  CLI::App* cmd = bench.add_subcommand(name, description);
  cmd->add_option("--prefix", opts->prefix, "key prefix the workload writes or reads")
      ->capture_default_str();
  if (name != "shared" && name != "mesh") {
    cmd->add_option("--keys", opts->keys, "number of keys")
        ->check(CLI::Range(int64_t{1}, int64_t{100'000'000}))
        ->capture_default_str();
  }
  cmd->add_option("--value-size", opts->value_size, "bytes of each value written (JSON-like text)")
      ->check(CLI::Range(size_t{1}, kvstore::kMaxValueBytes - 1024))
      ->capture_default_str();
  cmd->add_option("--timeout", opts->timeout_seconds,
                  "give up (exit 1) when the measured phase takes longer, in seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--quiet", opts->quiet, "no progress on stderr (shown only on a terminal anyway)");

  cmd->callback([&env, opts, run, name] {
    // Surrounding slashes would double or dangle in the key paths.
    std::string prefix = opts->prefix;
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    while (!prefix.empty() && prefix.front() == '/') prefix.erase(0, 1);
    if (prefix.empty()) throw CLI::ValidationError("--prefix", "must not be empty");

    BenchConfig config = opts->config;
    config.backend = &env.backend;
    config.ctx = env.ctx;
    config.prefix = prefix;
    config.keys = name == "shared" ? config.collaborators * config.keys_per_collaborator
                  : name == "mesh" ? config.clusters * config.keys_per_cluster
                                   : opts->keys;
    config.value_size = opts->value_size;
    config.progress = bench::ShowProgress(opts->quiet);
    config.timeout = std::chrono::duration<double>(opts->timeout_seconds);

    absl::StatusOr<BenchOutcome> outcome = run(config);
    if (!outcome.ok()) {
      std::cerr << "error: bench " << name << ": " << outcome.status().message() << "\n";
      env.exit_code = kExitFailure;
      return;
    }
    bench::Fields fields = outcome->fields;
    fields.emplace_back("verified", outcome->verification.ok() ? "true" : "false");
    std::cout << bench::ResultLine(name, outcome->keys, outcome->measurement, fields) << std::endl;
    if (!outcome->verification.ok()) {
      std::cerr << "error: bench " << name << ": " << outcome->verification.message() << "\n";
      env.exit_code = kExitFailure;
    }
  });
  return cmd;
}

}  // namespace

void AddBenchCommand(CLI::App& app, CommandEnv& env) {
  CLI::App* bench = app.add_subcommand(
      "bench",
      "Measure a workload against etcd (--endpoints) or the embedded store; prints one result "
      "line of key=value pairs, last on stdout; exit 0 only if the end state was verified");
  bench->require_subcommand(1);

  auto raw = std::make_shared<Options>();
  AddWorkload(*bench, env, "raw",
              "Backend::Update of --keys keys (no lease) from --concurrency callers", bench::RunRaw,
              raw)
      ->add_option("--concurrency", raw->config.concurrency,
                   "concurrent callers (with --async: calls in flight)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  bench->get_subcommand("raw")->add_flag(
      "--async", raw->config.async,
      "one caller keeping --concurrency Backend::UpdateAsync calls in flight");

  auto fill = std::make_shared<Options>();
  AddWorkload(*bench, env, "fill",
              "Write --keys keys under the prefix (no lease), e.g. for a later watch run on etcd",
              bench::RunFill, fill)
      ->add_option("--concurrency", fill->config.concurrency, "concurrent callers")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();

  auto sync = std::make_shared<Options>();
  AddWorkload(*bench, env, "sync",
              "A WorkqueueSyncStore (leased keys) given --keys keys at once: from the first "
              "UpsertKey until all of them and the synced key are written",
              bench::RunSync, sync)
      ->add_option("--workers", sync->config.workers, "SyncStore workers")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();

  auto watch = std::make_shared<Options>();
  CLI::App* watch_cmd = AddWorkload(
      *bench, env, "watch",
      "A RestartableWatchStore on a prefix holding --keys keys: from Watch until the on-sync "
      "callback. The prefix must hold exactly --keys keys (else exit 1). The embedded store keeps "
      "nothing between runs, so without --endpoints this command first writes the keys itself, "
      "in this process and not measured; with etcd, fill the prefix first with `bench fill`",
      bench::RunWatch, watch);
  watch_cmd
      ->add_option("--page-size", watch->config.page_size,
                   "etcd list page size in keys (0: the library's default); ignored by the "
                   "embedded store")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  watch_cmd
      ->add_option("--fill-keys", watch->config.fill_keys,
                   "keys to write under the prefix before the measured phase (default: --keys "
                   "on the embedded store, 0 with etcd)")
      ->check(CLI::Range(int64_t{0}, int64_t{100'000'000}));

  auto shared = std::make_shared<Options>();
  CLI::App* shared_cmd = AddWorkload(
      *bench, env, "shared",
      "--collaborators SharedStores, each with its own backend client and "
      "--keys-per-collaborator keys: from the first write until every collaborator sees all "
      "keys (keys = collaborators x keys-per-collaborator). Clears the prefix before and after. "
      "Prints the thread count once every store joined (threads_joined=) and the peak while "
      "they work (threads=, the collaborators' writer threads included)",
      bench::RunShared, shared);
  shared_cmd->add_option("--collaborators", shared->config.collaborators, "collaborators")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  shared_cmd
      ->add_option("--keys-per-collaborator", shared->config.keys_per_collaborator,
                   "keys each collaborator owns")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}))
      ->capture_default_str();

  auto mesh = std::make_shared<Options>();
  CLI::App* mesh_cmd = AddWorkload(
      *bench, env, "mesh",
      "--clusters remote clusters in Cilium's layout (each with its own client of the etcd, or "
      "of one embedded store) with --keys-per-cluster node keys each, mirrored by a Mesh into an "
      "embedded target: from adding the clusters until every one is ready with all its keys; "
      "prints the peak thread count (threads=)",
      bench::RunMesh, mesh);
  mesh_cmd->add_option("--clusters", mesh->config.clusters, "remote clusters (IDs 1..N)")
      ->check(CLI::Range(1, 255))
      ->capture_default_str();
  mesh_cmd->add_option("--keys-per-cluster", mesh->config.keys_per_cluster, "node keys per cluster")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}))
      ->capture_default_str();
}

}  // namespace kvstorectl

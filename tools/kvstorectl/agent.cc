// `kvstorectl agent`: one collaborator of a SharedStore. It publishes its keys (leased to its
// session), prints every change it observes, protects its keys against outside deletes, and takes
// them away when it leaves on SIGINT/SIGTERM.
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agent_mesh_support.h"
#include "commands.h"
#include "health.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace kvstorectl {
namespace {

using namespace std::chrono_literals;
using kvstore::store::KVPair;

// Leaving deletes the agent's keys; an unreachable backend must not hold the exit up for longer
// than a person at a terminal accepts: what could not be deleted by then is left to the session
// lease, and the log says so.
constexpr auto kLeaveTimeout = 1500ms;
// Once ready, the main loop turns this often; /healthz fails when it has not for kStallAfter.
constexpr auto kLoopTurn = 1s;
constexpr auto kStallAfter = 30s;

constexpr char kAgentDescription[] =
    R"(Join a shared store as one collaborator and stay until SIGINT/SIGTERM.

Key names are taken as given, relative to --prefix: `--prefix cilium/state/demo/v1 --key a/b`
publishes cilium/state/demo/v1/a/b. Keys are leased to this agent's session, re-created when
deleted from outside, and deleted when the agent leaves (SIGINT/SIGTERM); if it dies instead they
expire with its lease. Two agents publishing the same name overwrite each other: include the agent
name in key names to keep them apart (e.g. --key alice/ip).

Every update and delete seen under the prefix (this agent's own keys included) is printed on
stdout, one line each, names relative to the prefix:
  update NAME VALUE        (control bytes in text output are written as \xNN)
  delete NAME
or with -o json one object a line: {"agent":..,"event":"update"|"delete","key":..,"value":..}.
Without --endpoints/--etcd-config the embedded in-memory store of this process is used.)";

// One --key with its value, in command-line order.
struct KeyArg {
  std::string name;
  std::optional<std::string> value;
  std::optional<std::string> value_file;
};

struct AgentOptions {
  std::string name;
  std::string prefix;
  std::vector<KeyArg> keys;
  std::string pairing_error;  // the first misplaced --value/--value-file, found while parsing
  std::string metrics_listen;
  std::string output = "text";
  double sync_interval_seconds = 0;
  int64_t lease_ttl_seconds = 0;  // 0: the backend's default (15 minutes)
};

// Prints what the store reports and keeps the terminal's progress line current.
class PrintingObserver : public kvstore::store::Observer {
 public:
  PrintingObserver(std::shared_ptr<Output> output, std::string agent, std::string prefix,
                   std::set<std::string> own, bool json)
      : output_(std::move(output)),
        agent_(std::move(agent)),
        prefix_(std::move(prefix)),
        own_(std::move(own)),
        json_(json) {}

  void OnUpdate(const kvstore::store::Key& key) override {
    std::string name = key.GetKeyName();
    std::string value;
    if (const auto* pair = dynamic_cast<const KVPair*>(&key)) {
      value = pair->value;
    } else if (auto marshalled = key.Marshal(); marshalled.ok()) {
      value = *std::move(marshalled);
    }
    spdlog::debug("observed update agent={} prefix={} key={}", agent_, prefix_, name);
    if (json_) {
      output_->PrintLine(
          DumpJsonLine({{"agent", agent_}, {"event", "update"}, {"key", name}, {"value", value}}));
    } else {
      output_->PrintLine("update " + EscapeForLine(name) + " " + EscapeForLine(value));
    }
    kvstore::MutexLock lock(mu_);
    seen_.insert(std::move(name));
    ShowProgressLocked();
  }

  void OnDelete(const kvstore::store::NamedKey& key) override {
    std::string name = key.GetKeyName();
    spdlog::debug("observed delete agent={} prefix={} key={}", agent_, prefix_, name);
    if (json_) {
      output_->PrintLine(DumpJsonLine({{"agent", agent_}, {"event", "delete"}, {"key", name}}));
    } else {
      output_->PrintLine("delete " + EscapeForLine(name));
    }
    kvstore::MutexLock lock(mu_);
    seen_.erase(name);
    ShowProgressLocked();
  }

  // Once joined: from then on the progress line shows what the agent sees.
  void StartProgress() {
    kvstore::MutexLock lock(mu_);
    show_progress_ = true;
  }

 private:
  void ShowProgressLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!show_progress_) return;
    size_t own_seen = 0;
    for (const auto& name : own_) own_seen += seen_.count(name);
    output_->SetProgress("[" + agent_ + "] " + std::to_string(seen_.size()) + " keys under " +
                         prefix_ + " (" + std::to_string(own_seen) + " own); Ctrl-C leaves");
  }

  const std::shared_ptr<Output> output_;
  const std::string agent_;
  const std::string prefix_;
  const std::set<std::string> own_;
  const bool json_;
  // The store calls from its event thread, and from the caller's thread in Close.
  kvstore::Mutex mu_;  // guards seen_ and show_progress_
  std::set<std::string> seen_ ABSL_GUARDED_BY(mu_);
  bool show_progress_ ABSL_GUARDED_BY(mu_) = false;
};

// A key name relative to the prefix: non-empty path segments only, so that the name the store
// reports back is the very name given.
bool ValidKeyName(std::string_view name) {
  if (name.empty() || name.starts_with('/') || name.ends_with('/')) return false;
  return name.find("//") == std::string_view::npos;
}

absl::StatusOr<std::string> ReadValueFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError("cannot read --value-file " + path);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError("cannot read --value-file " + path);
  return contents.str();
}

// The keys to publish, or a usage error.
std::vector<KVPair> ValidateAgentOptions(const AgentOptions& opts) {
  if (!opts.pairing_error.empty()) throw CLI::ValidationError(opts.pairing_error);
  if (opts.name.empty()) throw CLI::ValidationError("--name", "must not be empty");
  std::string_view prefix = opts.prefix;
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  if (prefix.empty()) throw CLI::ValidationError("--prefix", "must not be empty");
  ValidateMetricsListen(opts.metrics_listen);
  std::vector<KVPair> keys;
  std::set<std::string> names;
  for (const KeyArg& arg : opts.keys) {
    if (!ValidKeyName(arg.name)) {
      throw CLI::ValidationError("--key", "invalid key name \"" + arg.name +
                                              "\": a path relative to --prefix, without empty, "
                                              "leading or trailing segments");
    }
    if (!names.insert(arg.name).second) {
      throw CLI::ValidationError("--key", "key \"" + arg.name + "\" given twice");
    }
    if (arg.value_file) {
      auto value = ReadValueFile(*arg.value_file);
      if (!value.ok()) throw CLI::ValidationError(std::string(value.status().message()));
      keys.emplace_back(arg.name, *std::move(value));
    } else if (arg.value) {
      keys.emplace_back(arg.name, *arg.value);
    } else {
      throw CLI::ValidationError(
          "--key", "key \"" + arg.name + "\" needs a --value or --value-file after it");
    }
  }
  return keys;
}

// Errors that no retry can fix: the key or value itself is refused.
bool Permanent(const absl::Status& status) {
  return absl::IsInvalidArgument(status) || absl::IsResourceExhausted(status);
}

// Publishes `keys`, retrying each until it is written or `ctx` is done. Returns the first
// permanent error, else OK (also when stopped early). Tells `readiness` which key it is at.
absl::Status PublishKeys(const kvstore::Context& ctx, kvstore::store::SharedStore& store,
                         const std::vector<KVPair>& keys, const AgentOptions& opts, Output& output,
                         Readiness& readiness) {
  Backoff backoff(100ms, 5s);
  for (size_t i = 0; i < keys.size(); ++i) {
    const KVPair& key = keys[i];
    readiness.Set(false, absl::StrCat("writing key ", i + 1, " of ", keys.size(), ": ",
                                      EscapeForLine(key.key)));
    output.SetProgress("[" + opts.name + "] publishing " + std::to_string(i + 1) + "/" +
                       std::to_string(keys.size()) + " keys");
    while (true) {
      absl::Status status = store.UpdateLocalKeySync(ctx, key);
      if (status.ok()) break;
      if (ctx.Done()) return absl::OkStatus();
      if (Permanent(status)) {
        readiness.Set(false, absl::StrCat("cannot write key ", EscapeForLine(key.key), ": ",
                                          EscapeForLine(status.ToString())));
        return absl::Status(status.code(),
                            "publishing " + key.key + ": " + std::string(status.message()));
      }
      auto wait = backoff.Next();
      readiness.Set(false, absl::StrCat("writing key ", i + 1, " of ", keys.size(), ": ",
                                        EscapeForLine(key.key), " failed, retrying in ",
                                        wait.count(), "ms: ", EscapeForLine(status.ToString())));
      spdlog::warn("publishing failed, retrying agent={} prefix={} key={} retry_in={}ms error={}",
                   opts.name, opts.prefix, key.key, wait.count(), status.ToString());
      if (ctx.WaitFor(wait)) return absl::OkStatus();
    }
    backoff.Reset();
    spdlog::debug("published agent={} prefix={} key={}", opts.name, opts.prefix, key.key);
  }
  return absl::OkStatus();
}

int RunAgent(CommandEnv& env, const AgentOptions& opts, std::vector<KVPair> keys) {
  auto output = std::make_shared<Output>();
  auto started = StartMetrics(opts.metrics_listen);
  if (!started.ok()) {
    std::cerr << "error: " << started.status().message() << "\n";
    return kExitFailure;
  }
  std::unique_ptr<MetricsServer> metrics = *std::move(started);
  // /readyz: joined and every key written; /healthz: the loop below keeps turning once ready.
  Readiness readiness("opening the backend");
  LoopMonitor loop("agent loop", kStallAfter);
  if (metrics) {
    metrics->SetHealthChecks([&loop] { return loop.Check(); },
                             [&readiness] { return readiness.Check(); });
  }
  absl::Cleanup stop_checks = [&metrics] {
    if (metrics) metrics->StopHealthChecks();
  };
  OpenOptions open_options;
  if (metrics) open_options.metrics = metrics->metrics();
  open_options.lease_ttl = std::chrono::seconds(opts.lease_ttl_seconds);
  auto opened = env.backend.Open(open_options);
  if (!opened.ok()) {
    std::cerr << "error: " << opened.status() << "\n";
    return kExitFailure;
  }
  std::shared_ptr<kvstore::Backend> backend = *std::move(opened);
  if (metrics) {
    // /status: readiness, the backend's state and how fresh its watch is.
    metrics->SetStatusReport([&readiness, &opts, backend] {
      const HealthReport ready = readiness.Check();
      const kvstore::BackendStatus status = backend->Status();
      return nlohmann::json{
          {"agent", opts.name},
          {"prefix", opts.prefix},
          {"ready", ready.ok},
          {"reason", std::string(absl::StripTrailingAsciiWhitespace(ready.body))},
          {"backend",
           {{"ok", status.state == kvstore::BackendState::kOk}, {"message", status.message}}},
          {"watches", WatchesJson(backend->Watches(), std::chrono::system_clock::now())}};
    });
  }

  std::set<std::string> own;
  for (const KVPair& key : keys) own.insert(key.key);
  auto observer = std::make_shared<PrintingObserver>(output, opts.name, opts.prefix, std::move(own),
                                                     opts.output == "json");
  kvstore::store::Configuration config;
  config.prefix = opts.prefix;
  config.synchronization_interval =
      std::chrono::milliseconds(static_cast<int64_t>(opts.sync_interval_seconds * 1000));
  config.key_creator = kvstore::store::KVPairCreator;
  config.backend = backend;
  config.observer = observer;
  config.context = env.ctx;

  spdlog::info("joining shared store agent={} prefix={} keys={}", opts.name, opts.prefix,
               keys.size());
  output->SetProgress("[" + opts.name + "] joining " + opts.prefix + " ...");
  readiness.Set(false, "joining shared store " + EscapeForLine(opts.prefix) + ": listing its keys");
  auto joined = kvstore::store::SharedStore::Join(std::move(config));
  output->ClearProgress();
  if (!joined.ok()) {
    if (env.ctx.Done()) return kExitOk;  // stopped before it had joined: nothing to clean up
    std::cerr << "error: joining " << opts.prefix << ": " << joined.status() << "\n";
    return kExitFailure;
  }
  std::unique_ptr<kvstore::store::SharedStore> store = *std::move(joined);

  absl::Status published = PublishKeys(env.ctx, *store, keys, opts, *output, readiness);
  output->ClearProgress();
  if (published.ok() && !env.ctx.Done()) {
    spdlog::info("agent ready agent={} prefix={} keys={}", opts.name, opts.prefix, keys.size());
    readiness.Set(true,
                  absl::StrCat("ready: joined shared store ", EscapeForLine(opts.prefix), ", ",
                               keys.size(), " key", keys.size() == 1 ? "" : "s", " written"));
    observer->StartProgress();
    do {
      loop.Turned();
    } while (!env.ctx.WaitFor(kLoopTurn));
    output->ClearProgress();
  }
  readiness.Set(false, "leaving shared store " + EscapeForLine(opts.prefix));

  spdlog::info("leaving shared store agent={} prefix={}", opts.name, opts.prefix);
  auto [leave_ctx, cancel] = kvstore::WithTimeout(kvstore::Context::Background(), kLeaveTimeout);
  store->Close(leave_ctx);
  if (leave_ctx.Done() && !keys.empty()) {
    // Close logged each key it could not delete; this says what that means.
    std::string names;
    for (const KVPair& key : keys) names += (names.empty() ? "" : ",") + key.key;
    spdlog::warn(
        "left without confirming the delete of every key within {} ms (etcd unreachable?); the "
        "keys not deleted stay until the session lease expires ({}) agent={} prefix={} keys={}",
        std::chrono::duration_cast<std::chrono::milliseconds>(kLeaveTimeout).count(),
        opts.lease_ttl_seconds > 0 ? std::to_string(opts.lease_ttl_seconds) + " s" : "15 min",
        opts.name, opts.prefix, names);
  }
  cancel();
  store.reset();
  if (env.backend.UsesEtcd()) backend->Close();
  if (!published.ok()) {
    std::cerr << "error: " << published << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

void AddAgentCommand(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand("agent", "Join a shared store, publish keys, print every change");
  cmd->footer(kAgentDescription);
  auto opts = std::make_shared<AgentOptions>();
  cmd->add_option("--name", opts->name, "this agent's name (in logs and JSON output)")->required();
  cmd->add_option("--prefix", opts->prefix, "the shared store's prefix, e.g. cilium/state/demo/v1")
      ->required();
  // Triggered at each occurrence, so that every value pairs with the --key before it.
  cmd->add_option_function<std::string>(
         "--key",
         [opts](const std::string& name) {
           opts->keys.push_back({name, {}, {}});
         },
         "a key to publish, relative to --prefix; followed by --value or --value-file")
      ->trigger_on_parse();
  auto set_value = [opts](const char* flag, const std::string& text, bool is_file) {
    if (opts->keys.empty() || opts->keys.back().value || opts->keys.back().value_file) {
      if (opts->pairing_error.empty()) {
        opts->pairing_error = std::string(flag) + " \"" + text + "\" must follow a --key";
      }
      return;
    }
    (is_file ? opts->keys.back().value_file : opts->keys.back().value) = text;
  };
  cmd->add_option_function<std::string>(
         "--value", [set_value](const std::string& value) { set_value("--value", value, false); },
         "the value of the --key before it")
      ->trigger_on_parse();
  cmd->add_option_function<std::string>(
         "--value-file",
         [set_value](const std::string& path) { set_value("--value-file", path, true); },
         "a file holding the value of the --key before it (bytes as they are)")
      ->trigger_on_parse();
  cmd->add_option("--sync-interval", opts->sync_interval_seconds,
                  "seconds between re-writes of this agent's keys (0: 5 minutes)")
      ->check(CLI::Range(0.0, 365 * 24 * 3600.0));
  cmd->add_option("--lease-ttl", opts->lease_ttl_seconds,
                  "seconds this agent's keys outlive it if it dies without leaving "
                  "(0: 15 minutes; etcd raises very short TTLs to its minimum)")
      ->check(CLI::Range(int64_t{0}, int64_t{365} * 24 * 3600));
  cmd->add_option("--metrics-listen", opts->metrics_listen,
                  "serve Prometheus metrics at HOST:PORT/metrics, and /healthz and /readyz "
                  "(200 or 503, the reasons in the body) (port 0: any free port; a bare port "
                  "binds to 127.0.0.1); off by default");
  cmd->add_option("-o,--output", opts->output, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd->callback([&env, opts] {
    std::vector<KVPair> keys = ValidateAgentOptions(*opts);
    env.exit_code = RunAgent(env, *opts, std::move(keys));
  });
}

}  // namespace kvstorectl

// kvstorectl: the command-line tool of kvstore.
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "commands.h"
#include "observability.h"
#include "signals.h"

int main(int argc, char** argv) {
  // First, before any thread exists; joins its thread when main returns.
  const kvstorectl::SignalContext signals;
  // Debian builds abseil without NDEBUG, which leaves absl::Mutex's deadlock detection on: every
  // lock of gRPC's mutexes then updates a process-wide lock graph (about 3% of the client's CPU
  // in the shared benchmark's profile). It is a debugging aid that release builds of abseil omit.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  kvstorectl::CommandEnv env;
  env.ctx = signals.ctx();

  CLI::App app{
      "kvstorectl: share keys between processes through etcd or the embedded in-memory store"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand
  std::string log_level = "warn";
  std::string log_format = "text";
  app.add_option("--log-level", log_level, "log level (logs go to stderr)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.add_option("--log-format", log_format, "log format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  env.backend.AddTo(app);
  kvstorectl::AddKvCommands(app, env);
  kvstorectl::AddDemoCommand(app, env);
  kvstorectl::AddAgentCommand(app, env);
  kvstorectl::AddMeshCommand(app, env);
  kvstorectl::AddBenchCommand(app, env);
  kvstorectl::AddCiliumCommand(app, env);

  app.parse_complete_callback([&] { kvstorectl::ConfigureLogging(log_level, log_format); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kvstorectl::kExitOk : kvstorectl::kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kvstorectl::kExitFailure;
  }
  return env.exit_code;
}

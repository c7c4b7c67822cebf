// The subcommands of kvstorectl. Each Add* function registers its subcommands on `app`; when one
// runs, it stores the process exit status in `*exit_code`.
#ifndef KVSTORE_TOOLS_KVSTORECTL_COMMANDS_H_
#define KVSTORE_TOOLS_KVSTORECTL_COMMANDS_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "backend_flags.h"
#include "kvstore/context.h"

namespace kvstorectl {

// Exit statuses: 0 success, 1 the operation failed (or found nothing), 2 bad usage.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct CommandEnv {
  BackendFlags backend;
  kvstore::Context ctx;  // ends on SIGINT/SIGTERM
  int exit_code = kExitOk;
};

void AddKvCommands(CLI::App& app, CommandEnv& env);
void AddDemoCommand(CLI::App& app, CommandEnv& env);
void AddAgentCommand(CLI::App& app, CommandEnv& env);  // agent.cc
void AddMeshCommand(CLI::App& app, CommandEnv& env);   // mesh.cc
void AddBenchCommand(CLI::App& app, CommandEnv& env);  // bench.cc

// cilium.cc
void AddCiliumCommand(CLI::App& app, CommandEnv& env);

// A value of one of Cilium's kinds, decoded (cilium.cc): its kind ("nodes", ...), and either a
// one-line summary with the object as Cilium's JSON, or why it does not decode.
struct CiliumDecoded {
  std::string kind;
  std::string summary;
  std::string json;
  std::string error;
};
// nullopt when `key` is not in a directory of Cilium's kinds (cilium/state/... or
// cilium/cache/...).
std::optional<CiliumDecoded> DecodeCiliumValue(const std::string& key, const std::string& value);

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_COMMANDS_H_

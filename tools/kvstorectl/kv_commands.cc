// get, put, del, ls, watch and status: one backend operation each.
#include <iostream>
#include <iterator>
#include <string>

#include "agent_mesh_support.h"
#include "commands.h"
#include "nlohmann/json.hpp"

namespace kvstorectl {
namespace {

using nlohmann::json;

// Keys and values may hold any bytes: invalid UTF-8 is replaced rather than rejected.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

struct OutputFlag {
  std::string format = "text";
  void AddTo(CLI::App& cmd) {
    cmd.add_option("-o,--output", format, "output format")
        ->check(CLI::IsMember({"text", "json"}))
        ->capture_default_str();
  }
  bool Json() const { return format == "json"; }
};

int Fail(const absl::Status& status) {
  std::cerr << "error: " << status << "\n";
  return kExitFailure;
}

std::shared_ptr<kvstore::Backend> OpenOrReport(CommandEnv& env) {
  auto backend = env.backend.Open();
  if (!backend.ok()) {
    Fail(backend.status());
    return nullptr;
  }
  return *backend;
}

void AddGet(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand("get", "Print the value of a key (exit 1 when missing)");
  struct Options {
    std::string key;
    OutputFlag output;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("key", opts->key, "the key")->required();
  opts->output.AddTo(*cmd);
  cmd->callback([&env, opts] {
    auto backend = OpenOrReport(env);
    if (!backend) return void(env.exit_code = kExitFailure);
    auto value = backend->Get(env.ctx, opts->key);
    if (!value.ok()) return void(env.exit_code = Fail(value.status()));
    if (!value->has_value()) {
      if (opts->output.Json())
        std::cout << Dump(json{{"key", opts->key}, {"found", false}}) << "\n";
      std::cerr << "key not found: " << opts->key << "\n";
      return void(env.exit_code = kExitFailure);
    }
    if (opts->output.Json()) {
      std::cout << Dump(json{{"key", opts->key}, {"found", true}, {"value", **value}}) << "\n";
    } else {
      std::cout << **value << "\n";
    }
  });
}

void AddPut(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand("put", "Write a key");
  struct Options {
    std::string key;
    std::string value;
    bool lease = false;
    OutputFlag output;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("key", opts->key, "the key")->required();
  CLI::Option* value = cmd->add_option(
      "value", opts->value,
      "the value; without it, standard input up to its end (as `etcdctl put`), so that values "
      "over the 128 KiB argument limit can be written");
  cmd->add_flag("--lease", opts->lease, "attach the key to this client's session lease");
  opts->output.AddTo(*cmd);
  cmd->callback([&env, opts, value] {
    if (value->count() == 0) {
      opts->value.assign(std::istreambuf_iterator<char>(std::cin),
                         std::istreambuf_iterator<char>());
      if (std::cin.bad()) {
        std::cerr << "error: cannot read the value from standard input\n";
        return void(env.exit_code = kExitFailure);
      }
    }
    auto backend = OpenOrReport(env);
    if (!backend) return void(env.exit_code = kExitFailure);
    if (auto status = backend->Update(env.ctx, opts->key, opts->value, opts->lease); !status.ok()) {
      return void(env.exit_code = Fail(status));
    }
    if (opts->output.Json()) std::cout << Dump(json{{"key", opts->key}, {"written", true}}) << "\n";
  });
}

void AddDel(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand("del", "Delete a key, or every key under a prefix");
  struct Options {
    std::string key;
    bool prefix = false;
    OutputFlag output;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("key", opts->key, "the key (or prefix with --prefix)")->required();
  cmd->add_flag("--prefix", opts->prefix, "delete every key starting with KEY");
  opts->output.AddTo(*cmd);
  cmd->callback([&env, opts] {
    auto backend = OpenOrReport(env);
    if (!backend) return void(env.exit_code = kExitFailure);
    absl::Status status = opts->prefix ? backend->DeletePrefix(env.ctx, opts->key)
                                       : backend->Delete(env.ctx, opts->key);
    if (!status.ok()) return void(env.exit_code = Fail(status));
    if (opts->output.Json()) std::cout << Dump(json{{"key", opts->key}, {"deleted", true}}) << "\n";
  });
}

void AddLs(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand("ls", "List the keys under a prefix with their values");
  struct Options {
    std::string prefix;
    OutputFlag output;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("prefix", opts->prefix, "the key prefix")->required();
  opts->output.AddTo(*cmd);
  cmd->callback([&env, opts] {
    auto backend = OpenOrReport(env);
    if (!backend) return void(env.exit_code = kExitFailure);
    auto pairs = backend->ListPrefix(env.ctx, opts->prefix);
    if (!pairs.ok()) return void(env.exit_code = Fail(pairs.status()));
    for (const auto& [key, value] : *pairs) {
      if (opts->output.Json()) {
        std::cout << Dump(json{{"key", key},
                               {"value", value.data},
                               {"mod_revision", value.mod_revision},
                               {"lease_id", value.lease_id}})
                  << "\n";
      } else {
        std::cout << key << " " << value.data << "\n";
      }
    }
  });
}

void AddWatch(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand(
      "watch", "List a prefix, then print every change until interrupted (one event a line)");
  struct Options {
    std::string prefix;
    OutputFlag output;
    double seconds = 0;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("prefix", opts->prefix, "the key prefix")->required();
  cmd->add_option("--timeout", opts->seconds, "stop after this many seconds (0: until interrupted)")
      ->check(CLI::NonNegativeNumber);
  opts->output.AddTo(*cmd);
  cmd->callback([&env, opts] {
    auto backend = OpenOrReport(env);
    if (!backend) return void(env.exit_code = kExitFailure);
    kvstore::Context ctx = env.ctx;
    kvstore::CancelFunc cancel = [] {};
    if (opts->seconds > 0) {
      std::tie(ctx, cancel) =
          kvstore::WithTimeout(env.ctx, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::duration<double>(opts->seconds)));
    }
    auto watcher = backend->ListAndWatch(ctx, opts->prefix, 1024);
    while (auto ev = watcher->Next(ctx)) {
      // Values of Cilium's kinds are shown decoded too (not for deletions: no value).
      std::optional<CiliumDecoded> decoded;
      if (ev->type == kvstore::EventType::kCreate || ev->type == kvstore::EventType::kModify) {
        decoded = DecodeCiliumValue(ev->key, ev->value);
      }
      if (opts->output.Json()) {
        json line = {{"type", kvstore::EventTypeName(ev->type)},
                     {"key", ev->key},
                     {"value", ev->value},
                     {"revision", ev->revision}};
        if (decoded && decoded->error.empty()) {
          line["decoded"] = json::parse(decoded->json, nullptr, /*allow_exceptions=*/false);
        } else if (decoded) {
          line["decode_error"] = decoded->error;
        }
        std::cout << Dump(line) << std::endl;
      } else {
        std::cout << kvstore::EventTypeName(ev->type);
        if (ev->type != kvstore::EventType::kListDone) {
          std::cout << " " << ev->key << " " << ev->value << " rev=" << ev->revision;
        }
        if (decoded && decoded->error.empty()) {
          std::cout << " " << decoded->kind << ": " << decoded->summary;
        } else if (decoded) {
          std::cout << " decode_error: " << decoded->error;
        }
        std::cout << std::endl;
      }
    }
    watcher->Stop();
    cancel();
  });
}

void AddStatus(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand("status", "Show the backend's state (endpoint, version, leader)");
  struct Options {
    OutputFlag output;
  };
  auto opts = std::make_shared<Options>();
  opts->output.AddTo(*cmd);
  cmd->callback([&env, opts] {
    auto backend = OpenOrReport(env);
    if (!backend) return void(env.exit_code = kExitFailure);
    kvstore::BackendStatus status = backend->Status();
    bool ok = status.state == kvstore::BackendState::kOk;
    if (opts->output.Json()) {
      std::cout << Dump(json{{"ok", ok},
                             {"message", status.message},
                             {"watches",
                              WatchesJson(backend->Watches(), std::chrono::system_clock::now())}})
                << "\n";
    } else {
      std::cout << status.message << "\n";
    }
    if (!ok) env.exit_code = kExitFailure;
  });
}

}  // namespace

void AddKvCommands(CLI::App& app, CommandEnv& env) {
  AddGet(app, env);
  AddPut(app, env);
  AddDel(app, env);
  AddLs(app, env);
  AddWatch(app, env);
  AddStatus(app, env);
}

}  // namespace kvstorectl

// `kvstorectl demo`: several collaborators share keys through the embedded store, one leaves, one
// crashes, a writer hands a prefix over to a reader through the synced canary. Every step says what
// it shows; the end state is verified (exit 1 if it is not what the design promises).
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "kvstore/store/watch_store_manager.h"

namespace kvstorectl {
namespace {

using namespace std::chrono_literals;
using kvstore::store::KVPair;

constexpr std::string_view kDemoPrefix = "cilium/state/demo/v1";
constexpr std::string_view kServicesPrefix = "cilium/state/services/v1";

// Counts what a collaborator observes.
class CountingObserver : public kvstore::store::Observer {
 public:
  void OnUpdate(const kvstore::store::Key&) override { ++updates; }
  void OnDelete(const kvstore::store::NamedKey&) override { ++deletes; }
  std::atomic<int> updates = 0;
  std::atomic<int> deletes = 0;
};

struct Collaborator {
  std::string name;
  std::shared_ptr<kvstore::Backend> client;
  std::shared_ptr<CountingObserver> observer = std::make_shared<CountingObserver>();
  std::unique_ptr<kvstore::store::SharedStore> store;
  int owned = 0;
  bool active = true;
};

class Demo {
 public:
  Demo(const kvstore::Context& ctx, int collaborators, int keys_each, bool fast)
      : ctx_(ctx), keys_each_(keys_each), fast_(fast), tty_(isatty(STDOUT_FILENO) != 0) {
    static const char* kNames[] = {"alice", "bob", "carol", "dave", "erin", "frank", "grace"};
    for (int i = 0; i < collaborators; ++i) {
      Collaborator c;
      c.name = i < 7 ? kNames[i] : "agent" + std::to_string(i);
      collaborators_.push_back(std::move(c));
    }
  }

  int Run() {
    Step(
        "An embedded store starts: an etcd-like server inside this process, with revisions, "
        "leases and watches.");
    store_ = kvstore::memory::InMemoryStore::Create();

    Step("Each collaborator joins the shared store under " + std::string(kDemoPrefix) +
         " with its own client and session, as separate agents would.");
    for (auto& c : collaborators_) {
      c.client = store_->NewClient(c.name);
      kvstore::store::Configuration config;
      config.prefix = std::string(kDemoPrefix);
      config.key_creator = kvstore::store::KVPairCreator;
      config.backend = c.client;
      config.observer = c.observer;
      config.context = ctx_;
      auto joined = kvstore::store::SharedStore::Join(std::move(config));
      if (!joined.ok())
        return Fail("join failed for " + c.name + ": " + joined.status().ToString());
      c.store = *std::move(joined);
    }

    Step("Each one publishes " + std::to_string(keys_each_) +
         " keys it owns (leased to its session); all of them watch the prefix.");
    for (auto& c : collaborators_) {
      for (int k = 0; k < keys_each_; ++k) {
        KVPair key(c.name + "/key" + std::to_string(k),
                   "{\"owner\":\"" + c.name + "\",\"n\":" + std::to_string(k) + "}");
        if (auto status = c.store->UpdateLocalKeySync(ctx_, key); !status.ok()) {
          return Fail("publish failed for " + c.name + ": " + status.ToString());
        }
        ++c.owned;
        Pause(20ms);
      }
    }
    if (!AwaitConvergence()) return Fail("collaborators did not converge");
    PrintTable();

    Collaborator& leaver = collaborators_.back();
    Step(leaver.name + " leaves cleanly (Close): its keys are deleted and the others see them go.");
    leaver.store->Close(ctx_);
    leaver.active = false;
    if (!AwaitConvergence()) return Fail("others still see the keys of " + leaver.name);

    if (collaborators_.size() >= 3) {
      Collaborator& crasher = collaborators_[1];
      Step(crasher.name +
           " crashes: it stops without deleting anything, and its session lease runs out; the "
           "store deletes its leased keys and the others see them go.");
      crasher.store->Release();
      store_->ExpireSession(*crasher.client);
      crasher.active = false;
      if (!AwaitConvergence()) return Fail("others still see the keys of " + crasher.name);
    }

    Collaborator& keeper = collaborators_.front();
    std::string stolen = kvstore::JoinPath(kDemoPrefix, keeper.name + "/key0");
    Step("Someone deletes " + stolen + " behind " + keeper.name + "'s back: " + keeper.name +
         " owns it, so it writes it again.");
    auto outsider = store_->NewClient("outsider");
    if (auto status = outsider->Delete(ctx_, stolen); !status.ok()) return Fail(status.ToString());
    if (!AwaitKey(*outsider, stolen)) return Fail(stolen + " was not re-created");
    if (!AwaitConvergence()) return Fail("collaborators did not converge after the re-create");
    PrintTable();

    if (!HandOver()) return 1;

    for (auto& c : collaborators_) {
      if (c.active) c.store->Close(ctx_);
    }
    std::cout << "\nConverged: every collaborator saw exactly the keys of the live ones.\n";
    return kExitOk;
  }

 private:
  void Step(const std::string& text) {
    std::cout << "\n== " << ++step_ << ". " << text << "\n" << std::flush;
    Pause(300ms);
  }

  void Pause(std::chrono::milliseconds d) {
    if (!fast_) ctx_.WaitFor(d);
  }

  int Fail(const std::string& why) {
    std::cout << "\nFAILED: " << why << "\n";
    return kExitFailure;
  }

  int Expected() const {
    int total = 0;
    for (const auto& c : collaborators_) {
      if (c.active) total += c.owned;
    }
    return total;
  }

  // Waits until every live collaborator sees exactly the keys of the live ones, showing progress.
  bool AwaitConvergence() {
    const int expected = Expected();
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (true) {
      bool converged = true;
      std::string line = "   converging:";
      for (const auto& c : collaborators_) {
        if (!c.active) continue;
        int seen = c.store->NumEntries();
        converged = converged && seen == expected;
        line += " " + c.name + " " + std::to_string(seen) + "/" + std::to_string(expected);
      }
      if (tty_) std::cout << "\r" << line << "   " << std::flush;
      if (converged) {
        if (tty_) std::cout << "\r";
        std::cout << line << "  done\n";
        return true;
      }
      if (ctx_.Done() || std::chrono::steady_clock::now() > deadline) {
        std::cout << "\n";
        return false;
      }
      ctx_.WaitFor(10ms);
    }
  }

  bool AwaitKey(kvstore::Backend& backend, const std::string& key) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline && !ctx_.Done()) {
      auto value = backend.Get(ctx_, key);
      if (value.ok() && value->has_value()) return true;
      ctx_.WaitFor(10ms);
    }
    return false;
  }

  void PrintTable() {
    std::cout << "\n   " << std::left << std::setw(12) << "collaborator" << std::right
              << std::setw(8) << "state" << std::setw(12) << "keys owned" << std::setw(11)
              << "keys seen" << std::setw(9) << "updates" << std::setw(9) << "deletes"
              << "\n";
    for (const auto& c : collaborators_) {
      std::cout << "   " << std::left << std::setw(12) << c.name << std::right << std::setw(8)
                << (c.active ? "live" : "gone") << std::setw(12) << (c.active ? c.owned : 0)
                << std::setw(11) << (c.active ? c.store->NumEntries() : 0) << std::setw(9)
                << c.observer->updates << std::setw(9) << c.observer->deletes << "\n";
    }
  }

  // A writer publishes services through a SyncStore and marks them synced; a reader's
  // WatchStoreManager waits for that canary before it starts a WatchStore on the prefix.
  bool HandOver() {
    Step(
        "Hand-over: a writer publishes services through a SyncStore, then writes the synced "
        "canary; a reader starts watching the prefix only once the canary appears.");
    auto writer_client = store_->NewClient("writer");
    auto reader_client = store_->NewClient("reader");
    auto [ctx, cancel] = kvstore::WithCancel(ctx_);

    auto writer =
        kvstore::store::NewWorkqueueSyncStore("demo", writer_client, std::string(kServicesPrefix));
    std::thread writer_thread([&writer, ctx = ctx] { writer->Run(ctx); });

    auto reader_observer = std::make_shared<CountingObserver>();
    std::atomic<bool> reader_synced = false;
    kvstore::store::RestartableWatchStoreOptions reader_options;
    reader_options.on_sync_callbacks.push_back([&](const kvstore::Context&) {
      reader_synced = true;
      std::cout << "   reader: initial list of " << kServicesPrefix << " complete\n";
    });
    auto reader = kvstore::store::NewRestartableWatchStore(
        "demo", kvstore::store::KVPairCreator, reader_observer, std::move(reader_options));
    auto manager = kvstore::store::NewWatchStoreManagerSync(reader_client, "demo");
    manager->Register(std::string(kServicesPrefix), [&](const kvstore::Context& fn_ctx) {
      std::cout << "   reader: synced canary seen, starting the watch\n";
      reader->Watch(fn_ctx, *reader_client, kServicesPrefix);
    });
    std::thread manager_thread([&manager, ctx = ctx] { manager->Run(ctx); });

    constexpr int kServices = 5;
    for (int i = 0; i < kServices; ++i) {
      KVPair service("default/svc" + std::to_string(i),
                     "{\"port\":" + std::to_string(8000 + i) + "}");
      if (auto status = writer->UpsertKey(ctx, service); !status.ok()) {
        std::cout << "   upsert failed: " << status << "\n";
      }
    }
    std::cout << "   writer: " << kServices << " services queued\n";
    auto synced_status = writer->Synced(ctx, {[](const kvstore::Context&) {
                                          std::cout
                                              << "   writer: all written, canary "
                                              << kvstore::SyncedKeyPath("demo", kServicesPrefix)
                                              << " written\n";
                                        }});
    bool ok = synced_status.ok();
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (ok && !(reader_synced && reader->NumEntries() == kServices)) {
      if (std::chrono::steady_clock::now() > deadline || ctx.Done()) {
        ok = false;
        break;
      }
      ctx.WaitFor(10ms);
    }
    cancel();
    manager_thread.join();
    writer_thread.join();
    if (!ok) {
      Fail("the reader did not receive the " + std::to_string(kServices) + " services");
      return false;
    }
    std::cout << "   reader holds " << reader->NumEntries() << " services after the hand-over\n";
    return true;
  }

  kvstore::Context ctx_;
  const int keys_each_;
  const bool fast_;
  const bool tty_;
  int step_ = 0;
  std::shared_ptr<kvstore::memory::InMemoryStore> store_;
  std::vector<Collaborator> collaborators_;
};

}  // namespace

void AddDemoCommand(CLI::App& app, CommandEnv& env) {
  auto* cmd = app.add_subcommand(
      "demo", "Watch collaborators share keys through the embedded store (no server needed)");
  struct Options {
    int collaborators = 3;
    int keys = 5;
    bool fast = false;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("--collaborators", opts->collaborators, "number of collaborators")
      ->check(CLI::Range(2, 50))
      ->capture_default_str();
  cmd->add_option("--keys", opts->keys, "keys each collaborator owns")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  cmd->add_flag("--fast", opts->fast, "no pauses between steps");
  cmd->callback([&env, opts] {
    if (env.backend.UsesEtcd()) {
      std::cerr << "error: demo runs on the embedded store only; drop --endpoints/--etcd-config\n";
      env.exit_code = kExitUsage;
      return;
    }
    Demo demo(env.ctx, opts->collaborators, opts->keys, opts->fast);
    env.exit_code = demo.Run();
  });
}

}  // namespace kvstorectl

#include "kvstore/store/watch_store_manager.h"

#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/blocking_pool.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/watch_store.h"
#include "spdlog/spdlog.h"

namespace kvstore::store {
namespace {

// What both kinds of manager share: the registered functions, and a count of those running.
class ManagerBase : public WatchStoreManager {
 public:
  explicit ManagerBase(std::string cluster_name) : cluster_name_(std::move(cluster_name)) {}
  // Run waits for every function it started, so none is left running here.
  ~ManagerBase() override = default;

  void Register(std::string prefix, WSMFunc fn) override {
    MutexLock lock(mu_);
    if (running_) {
      throw std::logic_error("WatchStoreManager::Register called after Run started");
    }
    functions_[std::move(prefix)] = std::move(fn);
  }

 protected:
  // Marks the manager as running; throws on a second Run.
  void Start() {
    MutexLock lock(mu_);
    if (running_) throw std::logic_error("WatchStoreManager::Run called twice");
    running_ = true;
    spdlog::info("Starting watch store manager (cluster {})", cluster_name_);
  }

  // Starts the function registered for `prefix`, once; ignores other prefixes. A function may
  // run until `ctx` ends, so it runs on the callback pool, which holds a thread for it meanwhile
  // (a thread of its own, as SPEC says) and has none left over once it returned.
  void Ready(const Context& ctx, const std::string& prefix) {
    MutexLock lock(mu_);
    auto it = functions_.find(prefix);
    if (it == functions_.end()) {
      spdlog::debug("Sync event for unregistered prefix {} (cluster {})", prefix, cluster_name_);
      return;
    }
    WSMFunc fn = std::move(it->second);
    functions_.erase(it);
    if (!fn) return;
    spdlog::debug("Starting function for prefix {} (cluster {})", prefix, cluster_name_);
    {
      MutexLock guard(started_->mu);
      ++started_->functions;
    }
    kvstore::internal::CallbackPool().Post([fn = std::move(fn), ctx, prefix, running = started_] {
      try {
        fn(ctx);
      } catch (const std::exception& e) {
        spdlog::error("Function for prefix {} threw: {}", prefix, e.what());
      } catch (...) {
        spdlog::error("Function for prefix {} threw an unknown exception", prefix);
      }
      MutexLock guard(running->mu);
      --running->functions;
      running->cv.notify_all();
    });
  }

  std::vector<std::string> RegisteredPrefixes() const {
    MutexLock lock(mu_);
    std::vector<std::string> prefixes;
    for (const auto& [prefix, fn] : functions_) prefixes.push_back(prefix);
    return prefixes;
  }

  // Waits until `ctx` is done and every started function returned.
  void Wait(const Context& ctx) {
    ctx.Wait();
    {
      MutexLock lock(started_->mu);
      started_->cv.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(started_->mu) {
        return started_->functions == 0;
      });
    }
    spdlog::info("Stopped watch store manager (cluster {})", cluster_name_);
  }

  const std::string cluster_name_;

 private:
  // The functions started and not returned yet. Shared with them: the last one may still be
  // returning from its notify when Wait returns.
  struct Running {
    Mutex mu;
    CondVar cv;  // signals `functions` going down
    size_t functions ABSL_GUARDED_BY(mu) = 0;
  };

  mutable Mutex mu_;  // guards the fields below
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, WSMFunc> functions_ ABSL_GUARDED_BY(mu_);  // not yet started, by prefix

  const std::shared_ptr<Running> started_ = std::make_shared<Running>();
};

class ImmediateManager final : public ManagerBase {
 public:
  using ManagerBase::ManagerBase;

  void Run(const Context& ctx) override {
    Start();
    for (const std::string& prefix : RegisteredPrefixes()) Ready(ctx, prefix);
    Wait(ctx);
  }
};

class SyncManager final : public ManagerBase {
 public:
  SyncManager(std::shared_ptr<WatchStoreBackend> backend, std::string cluster_name)
      : ManagerBase(std::move(cluster_name)), backend_(std::move(backend)) {}

  void Run(const Context& ctx) override {
    Start();
    if (!backend_) {
      spdlog::error("Watch store manager for cluster {} has no backend", cluster_name_);
    } else {
      // The synced keys' names relative to cilium/synced/<cluster>/ are the registered prefixes.
      auto observer = std::make_shared<SyncedKeyObserver>(
          [this, ctx](const std::string& prefix) { Ready(ctx, prefix); });
      std::unique_ptr<WatchStore> store =
          NewRestartableWatchStore(cluster_name_, KVPairCreator, observer);
      store->Watch(ctx, *backend_, JoinPath(kSyncedPrefix, cluster_name_));
    }
    Wait(ctx);
  }

 private:
  class SyncedKeyObserver final : public Observer {
   public:
    explicit SyncedKeyObserver(std::function<void(const std::string&)> on_synced)
        : on_synced_(std::move(on_synced)) {}
    void OnUpdate(const Key& key) override { on_synced_(key.GetKeyName()); }
    void OnDelete(const NamedKey&) override {}

   private:
    const std::function<void(const std::string&)> on_synced_;
  };

  const std::shared_ptr<WatchStoreBackend> backend_;
};

}  // namespace

std::unique_ptr<WatchStoreManager> NewWatchStoreManagerImmediate(std::string cluster_name) {
  return std::make_unique<ImmediateManager>(std::move(cluster_name));
}

std::unique_ptr<WatchStoreManager> NewWatchStoreManagerSync(
    std::shared_ptr<WatchStoreBackend> backend, std::string cluster_name) {
  return std::make_unique<SyncManager>(std::move(backend), std::move(cluster_name));
}

}  // namespace kvstore::store

#include "kvstore/store/watch_store_manager.h"

#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/watch_store.h"
#include "spdlog/spdlog.h"

namespace kvstore::store {
namespace {

// What both kinds of manager share: the registered functions and the threads running them.
class ManagerBase : public WatchStoreManager {
 public:
  explicit ManagerBase(std::string cluster_name) : cluster_name_(std::move(cluster_name)) {}
  // Run joins every thread it started, so none is left here.
  ~ManagerBase() override = default;

  void Register(std::string prefix, WSMFunc fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_) {
      throw std::logic_error("WatchStoreManager::Register called after Run started");
    }
    functions_[std::move(prefix)] = std::move(fn);
  }

 protected:
  // Marks the manager as running; throws on a second Run.
  void Start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_) throw std::logic_error("WatchStoreManager::Run called twice");
    running_ = true;
    spdlog::info("Starting watch store manager (cluster {})", cluster_name_);
  }

  // Starts the function registered for `prefix` on its own thread, once; ignores other prefixes.
  void Ready(const Context& ctx, const std::string& prefix) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = functions_.find(prefix);
    if (it == functions_.end()) {
      spdlog::debug("Sync event for unregistered prefix {} (cluster {})", prefix, cluster_name_);
      return;
    }
    WSMFunc fn = std::move(it->second);
    functions_.erase(it);
    if (!fn) return;
    spdlog::debug("Starting function for prefix {} (cluster {})", prefix, cluster_name_);
    threads_.emplace_back([fn = std::move(fn), ctx, prefix] {
      try {
        fn(ctx);
      } catch (const std::exception& e) {
        spdlog::error("Function for prefix {} threw: {}", prefix, e.what());
      }
    });
  }

  std::vector<std::string> RegisteredPrefixes() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> prefixes;
    for (const auto& [prefix, fn] : functions_) prefixes.push_back(prefix);
    return prefixes;
  }

  // Waits until `ctx` is done and every started function returned.
  void Wait(const Context& ctx) {
    ctx.Wait();
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads.swap(threads_);
    }
    for (std::thread& thread : threads) thread.join();
    spdlog::info("Stopped watch store manager (cluster {})", cluster_name_);
  }

  const std::string cluster_name_;

 private:
  mutable std::mutex mu_;  // guards every field below
  bool running_ = false;
  std::map<std::string, WSMFunc> functions_;  // not yet started, by prefix
  std::vector<std::thread> threads_;
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

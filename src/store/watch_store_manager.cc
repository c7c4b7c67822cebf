#include "kvstore/store/watch_store_manager.h"

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
#include "store/async_stores.h"

namespace kvstore::store {
namespace {

using kvstore::internal::RunOnThisThread;
using kvstore::internal::Task;
using kvstore::internal::WaitGroup;

// What both kinds of manager share: the registered functions, and a count of those running.
class ManagerBase : public internal::AsyncWatchStoreManager {
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

  // The coroutine on the caller's thread; the functions on the callback pool.
  void Run(const Context& ctx) override {
    Start();
    RunOnThisThread(
        [&](Executor& here) { return Body(here, ctx, kvstore::internal::CallbackPool()); });
  }

  Task<void> RunAsync(Executor& executor, Context ctx, Executor* functions) override {
    Start();
    return Body(executor, std::move(ctx),
                functions != nullptr ? *functions : kvstore::internal::CallbackPool());
  }

 protected:
  // What Run does once started: starts the functions as their prefixes are ready, then waits
  // (WaitDone) for `ctx` and for them.
  virtual Task<void> Body(Executor& executor, Context ctx, Executor& functions) = 0;

  // Starts the function registered for `prefix`, once, on `functions`; ignores other prefixes.
  // A function may run until `ctx` ends, so on the callback pool it holds a thread meanwhile (a
  // thread of its own, as SPEC says), and none is left over once it returned.
  void Ready(const Context& ctx, const std::string& prefix, Executor& functions) {
    WSMFunc fn;
    {
      MutexLock lock(mu_);
      auto it = functions_.find(prefix);
      if (it == functions_.end()) {
        spdlog::debug("Sync event for unregistered prefix {} (cluster {})", prefix, cluster_name_);
        return;
      }
      fn = std::move(it->second);
      functions_.erase(it);
    }
    if (!fn) return;
    spdlog::debug("Starting function for prefix {} (cluster {})", prefix, cluster_name_);
    started_->Add();
    functions.Post([fn = std::move(fn), ctx, prefix, running = started_] {
      try {
        fn(ctx);
      } catch (const std::exception& e) {
        spdlog::error("Function for prefix {} threw: {}", prefix, e.what());
      } catch (...) {
        spdlog::error("Function for prefix {} threw an unknown exception", prefix);
      }
      running->Done();
    });
  }

  std::vector<std::string> RegisteredPrefixes() const {
    MutexLock lock(mu_);
    std::vector<std::string> prefixes;
    for (const auto& [prefix, fn] : functions_) prefixes.push_back(prefix);
    return prefixes;
  }

  // Waits until `ctx` is done and every started function returned.
  Task<void> WaitDone(Executor& executor, Context ctx) {
    co_await kvstore::internal::UntilDone(executor, ctx);
    co_await started_->Wait(executor);
    spdlog::info("Stopped watch store manager (cluster {})", cluster_name_);
  }

  const std::string cluster_name_;

 private:
  // Marks the manager as running; throws on a second Run.
  void Start() {
    MutexLock lock(mu_);
    if (running_) throw std::logic_error("WatchStoreManager::Run called twice");
    running_ = true;
    spdlog::info("Starting watch store manager (cluster {})", cluster_name_);
  }

  mutable Mutex mu_;  // guards the fields below
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, WSMFunc> functions_ ABSL_GUARDED_BY(mu_);  // not yet started, by prefix

  // The functions started and not returned yet. Shared with them: the last one may still be
  // returning from Done when the wait ends.
  const std::shared_ptr<WaitGroup> started_ = std::make_shared<WaitGroup>();
};

class ImmediateManager final : public ManagerBase {
 public:
  using ManagerBase::ManagerBase;

 private:
  Task<void> Body(Executor& executor, Context ctx, Executor& functions) override {
    for (const std::string& prefix : RegisteredPrefixes()) Ready(ctx, prefix, functions);
    co_await WaitDone(executor, std::move(ctx));
  }
};

class SyncManager final : public ManagerBase {
 public:
  SyncManager(std::shared_ptr<WatchStoreBackend> backend, std::string cluster_name)
      : ManagerBase(std::move(cluster_name)), backend_(std::move(backend)) {}

 private:
  Task<void> Body(Executor& executor, Context ctx, Executor& functions) override {
    if (!backend_) {
      spdlog::error("Watch store manager for cluster {} has no backend", cluster_name_);
    } else {
      // The synced keys' names relative to cilium/synced/<cluster>/ are the registered prefixes.
      auto observer = std::make_shared<SyncedKeyObserver>(
          [this, ctx, &functions](const std::string& prefix) { Ready(ctx, prefix, functions); });
      std::unique_ptr<internal::AsyncWatchStore> store =
          internal::NewAsyncRestartableWatchStore(cluster_name_, KVPairCreator, observer);
      co_await store->WatchAsync(executor, ctx, *backend_, JoinPath(kSyncedPrefix, cluster_name_));
    }
    co_await WaitDone(executor, std::move(ctx));
  }

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
  return internal::NewAsyncWatchStoreManagerImmediate(std::move(cluster_name));
}

std::unique_ptr<WatchStoreManager> NewWatchStoreManagerSync(
    std::shared_ptr<WatchStoreBackend> backend, std::string cluster_name) {
  return internal::NewAsyncWatchStoreManagerSync(std::move(backend), std::move(cluster_name));
}

std::unique_ptr<internal::AsyncWatchStoreManager> internal::NewAsyncWatchStoreManagerImmediate(
    std::string cluster_name) {
  return std::make_unique<ImmediateManager>(std::move(cluster_name));
}

std::unique_ptr<internal::AsyncWatchStoreManager> internal::NewAsyncWatchStoreManagerSync(
    std::shared_ptr<WatchStoreBackend> backend, std::string cluster_name) {
  return std::make_unique<SyncManager>(std::move(backend), std::move(cluster_name));
}

}  // namespace kvstore::store

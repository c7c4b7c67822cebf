#include "kvstore/mesh/mesh.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/backoff.h"
#include "core/clock_sleep.h"
#include "core/task.h"
#include "core/write_checks.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/mesh/heartbeat.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "mesh/heartbeat_write.h"
#include "mesh/mesh_metrics.h"
#include "mesh/remote_mirror.h"
#include "spdlog/spdlog.h"

namespace kvstore::mesh {
namespace {

using namespace std::chrono_literals;
using internal::MeshMetrics;
using internal::MirrorEnv;
using internal::RemoteMirror;
using kvstore::internal::Backoff;
using kvstore::internal::SleepOnClock;

// Retries of a drain's deletes (Cilium: from 2 s, doubling).
constexpr auto kDrainRetryBase = 2s;
constexpr auto kDrainRetryMax = 30s;

absl::StatusOr<std::shared_ptr<Backend>> OpenEtcdFromFile(const RemoteCluster& cluster,
                                                          std::shared_ptr<BackendMetrics> metrics) {
  absl::StatusOr<etcd::EtcdConfig> config = etcd::EtcdConfig::FromFile(cluster.config_path);
  if (!config.ok()) return config.status();
  config->metrics = std::move(metrics);
  return etcd::NewEtcdBackend(*std::move(config));
}

// The remote clusters a --clustermesh-config directory describes: file name -> contents, for each
// entry that is (or links to) a readable regular file containing "endpoints:", as Cilium's
// isEtcdConfigFile decides. nullopt when the directory cannot be read.
std::optional<std::map<std::string, std::string>> ReadConfigDirectory(const std::string& dir) {
  std::error_code error;
  std::filesystem::directory_iterator it(dir, error);
  if (error) return std::nullopt;
  std::map<std::string, std::string> files;
  for (; it != std::filesystem::directory_iterator(); it.increment(error)) {
    if (error) return std::nullopt;
    const std::filesystem::directory_entry& entry = *it;
    std::error_code entry_error;
    // Follows links: Kubernetes mounts each file as a link into a "..data" directory, which
    // itself is skipped as a directory.
    if (!std::filesystem::is_regular_file(entry.path(), entry_error)) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    if (!in) continue;
    std::ostringstream contents;
    contents << in.rdbuf();
    if (contents.str().find("endpoints:") == std::string::npos) continue;
    files.emplace(entry.path().filename().string(), contents.str());
  }
  return files;
}

// Cilium's layout needs a name Cilium accepts; explicit prefixes only one that is a single path
// element without spaces or control characters.
absl::Status CheckRemoteName(const RemoteCluster& cluster) {
  if (cluster.prefixes.empty()) return ValidateClusterName(cluster.name);
  const std::string_view name = cluster.name;
  bool plain = !name.empty() && name.find('/') == std::string_view::npos;
  for (char c : name) plain = plain && static_cast<unsigned char>(c) > 0x20 && c != 0x7f;
  if (plain) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("remote cluster name ", kvstore::internal::DescribeKey(name),
                   " must be one path element without spaces or control characters"));
}

class MeshImpl final : public Mesh {
 public:
  explicit MeshImpl(MeshOptions options)
      : options_(std::move(options)),
        clock_(options_.clock ? options_.clock : SystemClock()),
        metrics_(options_.registry, options_.metrics_namespace, options_.local_cluster_name) {
    if (!options_.open_backend) {
      options_.open_backend = [metrics = options_.metrics](const RemoteCluster& cluster) {
        return OpenEtcdFromFile(cluster, metrics);
      };
    }
    env_.options = &options_;
    env_.clock = clock_;
    env_.metrics = &metrics_;
    env_.emit = [this](const MeshEvent& event) { Emit(event); };
    env_.executor = options_.executor ? options_.executor : DefaultExecutor();
    env_.blocking = options_.blocking_executor ? options_.blocking_executor.get()
                                               : &kvstore::internal::BlockingPool();
  }

  ~MeshImpl() override { StopAll(); }

  void Run(const Context& ctx) override {
    {
      MutexLock lock(mu_);
      if (running_ || finished_) {
        spdlog::error("Mesh::Run called twice");
        return;
      }
      running_ = true;
      run_ctx_ = ctx;
      for (auto& [name, cluster] : clusters_) cluster->Start(ctx);
    }
    // The heartbeat runs on the mesh's strand; Run waits for it before returning.
    // Shared with the task: set_value may still run there when the wait below returns.
    auto heartbeat_done = std::make_shared<std::promise<void>>();
    std::future<void> heartbeat_ended = heartbeat_done->get_future();
    if (options_.heartbeat_interval > 0ms) {
      kvstore::internal::Spawn(strand_, Heartbeat(ctx),
                               [heartbeat_done] { heartbeat_done->set_value(); });
    } else {
      heartbeat_done->set_value();
    }
    do {
      if (!options_.config_directory.empty()) ScanConfigDirectory();
      ReapFinishedDrains();
    } while (SleepOnClock(ctx, *clock_, options_.config_poll_interval));
    heartbeat_ended.wait();
    StopAll();
  }

  absl::Status AddCluster(RemoteCluster cluster) override {
    if (absl::Status valid = CheckRemoteName(cluster); !valid.ok()) return valid;
    for (const MirroredPrefix& prefix : cluster.prefixes) {
      if (prefix.name.empty() || prefix.source.empty() || prefix.target.empty() ||
          prefix.synced_key.empty() || prefix.source_synced_key.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("remote cluster ", cluster.name,
                                                       ": a mirrored prefix needs a name, a ",
                                                       "source, a target and both canary keys"));
      }
    }
    std::set<std::string> names, canaries, targets;
    for (const MirroredPrefix& prefix : cluster.prefixes) {
      if (!names.insert(prefix.name).second || !canaries.insert(prefix.source_synced_key).second ||
          !targets.insert(prefix.target).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            "remote cluster ", cluster.name, ": two mirrored prefixes share a name, a target or ",
            "a source canary (", prefix.name, ")"));
      }
    }
    if (cluster.backend == nullptr && cluster.config_path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("remote cluster ", cluster.name,
                                                     " has neither a backend nor a config file"));
    }
    // A drain of this name stops first, so that none of its deletes lands after the new
    // mirror's writes.
    std::unique_ptr<Drain> cancelled;
    {
      MutexLock lock(mu_);
      if (finished_) return absl::FailedPreconditionError("the mesh has stopped");
      if (auto drain = drains_.find(cluster.name); drain != drains_.end()) {
        cancelled = std::move(drain->second);
        drains_.erase(drain);
      }
    }
    if (cancelled) {
      if (!cancelled->done) {
        spdlog::info("remote cluster added again, drain cancelled cluster={}", cancelled->name);
      }
      cancelled->cancel();
      cancelled->ended.wait();
    }
    MutexLock lock(mu_);
    if (finished_) return absl::FailedPreconditionError("the mesh has stopped");
    auto it = clusters_.find(cluster.name);
    if (it != clusters_.end()) {
      spdlog::info("remote cluster changed, reconnecting cluster={}", cluster.name);
      it->second->Reconnect(std::move(cluster));
    } else {
      spdlog::info("remote cluster added cluster={}", cluster.name);
      std::string name = cluster.name;
      auto mirror = std::make_unique<RemoteMirror>(std::move(cluster), env_);
      if (running_) mirror->Start(run_ctx_);
      clusters_.emplace(std::move(name), std::move(mirror));
      metrics_.SetRemoteClusters(clusters_.size());
    }
    return absl::OkStatus();
  }

  absl::Status RemoveCluster(std::string_view name) override {
    std::unique_ptr<RemoteMirror> mirror;
    {
      MutexLock lock(mu_);
      auto it = clusters_.find(std::string(name));
      if (it == clusters_.end()) {
        return absl::NotFoundError(absl::StrCat("no remote cluster ", std::string(name)));
      }
      mirror = std::move(it->second);
      clusters_.erase(it);
      metrics_.SetRemoteClusters(clusters_.size());
    }
    spdlog::info("remote cluster removed cluster={}", name);
    mirror->Stop();
    metrics_.Forget(name);
    auto drain = std::make_unique<Drain>();
    drain->name = std::string(name);
    drain->prefixes = mirror->DrainPrefixes();
    drain->delete_config = mirror->WritesClusterConfig();
    drain->last_status = mirror->Status();
    mirror.reset();
    std::unique_ptr<Drain> replaced;
    {
      MutexLock lock(mu_);
      // Not running: nothing was mirrored yet, or the mesh has stopped. Added again meanwhile:
      // its new mirror owns the keys.
      if (!running_ || finished_ || clusters_.contains(drain->name)) return absl::OkStatus();
      auto [ctx, cancel] = WithCancel(run_ctx_);
      drain->cancel = std::move(cancel);
      Drain* raw = drain.get();
      // Shared with the task: set_value may still run there when a wait for `ended` returns.
      auto ended = std::make_shared<std::promise<void>>();
      drain->ended = ended->get_future();
      kvstore::internal::Spawn(strand_, RunDrain(ctx, *raw), [ended] { ended->set_value(); });
      std::unique_ptr<Drain>& slot = drains_[raw->name];
      replaced = std::move(slot);  // a finished drain, or one of a concurrent RemoveCluster
      slot = std::move(drain);
    }
    if (replaced) {
      replaced->cancel();
      replaced->ended.wait();
    }
    return absl::OkStatus();
  }

  std::vector<RemoteClusterStatus> Status() const override {
    std::vector<RemoteClusterStatus> statuses;
    MutexLock lock(mu_);
    for (const auto& [name, cluster] : clusters_) statuses.push_back(cluster->Status());
    for (const auto& [name, drain] : drains_) {
      if (drain->done) continue;
      RemoteClusterStatus status = drain->last_status;
      status.connected = false;
      status.ready = false;
      status.draining = true;
      statuses.push_back(std::move(status));
    }
    std::sort(statuses.begin(), statuses.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    return statuses;
  }

 private:
  struct Drain {
    std::string name;
    std::vector<std::string> prefixes;
    bool delete_config = false;
    RemoteClusterStatus last_status;
    CancelFunc cancel;
    std::future<void> ended;  // ready once RunDrain's task finished
    std::atomic<bool> done = false;
  };

  // RunHeartbeat's loop as a coroutine: cilium/.heartbeat written in the target every
  // heartbeat_interval until `ctx` is done, each write bounded as Cilium bounds it (its lock
  // lease TTL), so that a hung target delays no tick.
  kvstore::internal::Task<void> Heartbeat(Context ctx) {
    do {
      co_await kvstore::internal::Offload(*env_.blocking, strand_, [&] {
        internal::WriteHeartbeat(ctx, *options_.target, options_.lease, clock_->WallNow());
        return true;
      });
    } while (co_await kvstore::internal::Sleep(strand_, *clock_, options_.heartbeat_interval, ctx));
  }

  void Emit(const MeshEvent& event) {
    if (!options_.on_event) return;
    MutexLock lock(event_mu_);
    options_.on_event(event);
  }

  // Deletes `what` (DeletePrefix, or Delete of one key) until it worked or `ctx` is done. The
  // deletes run on the blocking pool (or the blocking executor); the waits between them hold no
  // thread.
  kvstore::internal::Task<bool> DeleteWithRetries(Context ctx, std::string what, bool prefix) {
    Backoff backoff(kDrainRetryBase, kDrainRetryMax);
    while (!ctx.Done()) {
      absl::Status status = co_await kvstore::internal::Offload(*env_.blocking, strand_, [&] {
        return prefix ? options_.target->DeletePrefix(ctx, what)
                      : options_.target->Delete(ctx, what);
      });
      if (status.ok()) co_return true;
      if (ctx.Done()) break;
      const auto wait = backoff.Next();
      spdlog::warn("drain: cannot delete {}, retrying in {} ms: {}", what, wait.count(),
                   status.ToString());
      co_await kvstore::internal::Sleep(strand_, *clock_, wait, ctx);
    }
    co_return false;
  }

  // Cilium's drain, as a task on the mesh's strand: the cluster config goes at once (agents stop
  // connecting), the cached state after the grace period (agents have disconnected by then).
  kvstore::internal::Task<void> RunDrain(Context ctx, Drain& drain) {
    if (drain.delete_config) {
      const bool deleted = co_await DeleteWithRetries(ctx, ClusterConfigPath(drain.name), false);
      if (!deleted) co_return;
    }
    // The grace period counts from the kRemoved event, not from when the wait begins: whoever
    // saw the event (and moved a FakeClock on) must not find the wait starting after it.
    const Clock::time_point drain_at = clock_->Now() + options_.drain_grace_period;
    Emit(MeshEvent{MeshEvent::Type::kRemoved, drain.name, std::nullopt, ""});
    spdlog::info("drain: cluster config deleted, removing the cache in {} ms cluster={}",
                 options_.drain_grace_period.count(), drain.name);
    const bool waited =
        co_await kvstore::internal::Sleep(strand_, *clock_, drain_at - clock_->Now(), ctx);
    if (!waited) co_return;
    for (const std::string& prefix : drain.prefixes) {
      const bool deleted = co_await DeleteWithRetries(ctx, prefix, true);
      if (!deleted) co_return;
    }
    spdlog::info("drain: done cluster={}", drain.name);
    drain.done = true;
    Emit(MeshEvent{MeshEvent::Type::kDrained, drain.name, std::nullopt, ""});
  }

  void ScanConfigDirectory() {
    std::optional<std::map<std::string, std::string>> files =
        ReadConfigDirectory(options_.config_directory);
    if (!files.has_value()) {
      if (!directory_unreadable_) {
        spdlog::warn(
            "cannot read the clustermesh config directory {}: keeping the clusters as "
            "they are",
            options_.config_directory);
      }
      directory_unreadable_ = true;
      return;
    }
    directory_unreadable_ = false;
    if (!options_.local_cluster_name.empty()) files->erase(options_.local_cluster_name);
    for (const auto& [name, contents] : *files) {
      auto known = config_files_.find(name);
      if (known != config_files_.end() && known->second == contents) continue;
      config_files_[name] = contents;
      RemoteCluster cluster;
      cluster.name = name;
      cluster.config_path = (std::filesystem::path(options_.config_directory) / name).string();
      if (absl::Status status = AddCluster(std::move(cluster)); !status.ok()) {
        spdlog::error("ignoring clustermesh config {}: {}", name, status.ToString());
        Emit(MeshEvent{MeshEvent::Type::kFailure, name, std::nullopt,
                       std::string(status.message())});
      }
    }
    for (auto it = config_files_.begin(); it != config_files_.end();) {
      if (files->contains(it->first)) {
        ++it;
        continue;
      }
      absl::Status status = RemoveCluster(it->first);
      if (!status.ok() && !absl::IsNotFound(status)) {
        spdlog::error("cannot remove cluster {}: {}", it->first, status.ToString());
      }
      it = config_files_.erase(it);
    }
  }

  // Waits for and forgets the drains that are done.
  void ReapFinishedDrains() {
    std::vector<std::unique_ptr<Drain>> finished;
    {
      MutexLock lock(mu_);
      for (auto it = drains_.begin(); it != drains_.end();) {
        if (!it->second->done) {
          ++it;
          continue;
        }
        finished.push_back(std::move(it->second));
        it = drains_.erase(it);
      }
    }
    for (auto& drain : finished) drain->ended.wait();
  }

  // Stops every cluster and drain; later AddCluster calls fail. Idempotent.
  void StopAll() {
    std::map<std::string, std::unique_ptr<RemoteMirror>> clusters;
    std::map<std::string, std::unique_ptr<Drain>> drains;
    {
      MutexLock lock(mu_);
      finished_ = true;
      clusters.swap(clusters_);
      drains.swap(drains_);
    }
    for (auto& [name, cluster] : clusters) cluster->Stop();
    for (auto& [name, drain] : drains) {
      if (drain->cancel) drain->cancel();
      if (drain->ended.valid()) drain->ended.wait();
    }
  }

  MeshOptions options_;
  const std::shared_ptr<Clock> clock_;
  MeshMetrics metrics_;
  MirrorEnv env_;
  Strand strand_{options_.executor};  // the mesh's own tasks (the heartbeat, the drains)

  mutable Mutex mu_;  // guards the fields below
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  Context run_ctx_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<RemoteMirror>> clusters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Drain>> drains_ ABSL_GUARDED_BY(mu_);

  // Touched only by Run's thread.
  std::map<std::string, std::string> config_files_;  // name -> contents last acted on
  bool directory_unreadable_ = false;

  Mutex event_mu_;  // serializes on_event calls
};

}  // namespace

absl::StatusOr<std::unique_ptr<Mesh>> Mesh::New(MeshOptions options) {
  if (options.target == nullptr) return absl::InvalidArgumentError("the mesh needs a target");
  if (!options.config_directory.empty()) {
    std::error_code error;
    if (!std::filesystem::is_directory(options.config_directory, error)) {
      return absl::InvalidArgumentError(absl::StrCat("clustermesh config directory ",
                                                     options.config_directory,
                                                     " is not a readable directory"));
    }
  }
  if (!options.local_cluster_name.empty()) {
    if (absl::Status valid = ValidateClusterName(options.local_cluster_name); !valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("local cluster name: ", valid.message()));
    }
  }
  if (options.config_poll_interval <= std::chrono::milliseconds::zero() ||
      options.cluster_config_refresh <= std::chrono::milliseconds::zero() ||
      options.drain_grace_period < std::chrono::milliseconds::zero() ||
      options.heartbeat_interval < std::chrono::milliseconds::zero() ||
      options.remote_heartbeat_timeout < std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError(
        "mesh intervals must be positive (the grace period, heartbeat interval and remote "
        "heartbeat timeout may be 0)");
  }
  return std::unique_ptr<Mesh>(new MeshImpl(std::move(options)));
}

}  // namespace kvstore::mesh

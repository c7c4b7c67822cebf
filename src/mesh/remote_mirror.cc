#include "mesh/remote_mirror.h"

#include <chrono>
#include <deque>
#include <map>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/backoff.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "spdlog/spdlog.h"

namespace kvstore::mesh::internal {
namespace {

using namespace std::chrono_literals;
using kvstore::internal::Backoff;
using kvstore::internal::NextEvents;
using kvstore::internal::Sleep;
using kvstore::internal::WaitGroup;

// Retries of a connection, and of reading the remote's cluster config (Cilium retries the latter
// at most every 30 s too).
constexpr auto kConnectRetryBase = 1s;
constexpr auto kConnectRetryMax = 30s;
// A watch that ended on its own is started again after this back-off; one that lasted
// kHealthyWatch resets it.
constexpr auto kRewatchBase = 500ms;
constexpr auto kRewatchMax = 30s;
constexpr auto kHealthyWatch = 60s;
constexpr auto kHealthCheckInterval = 1s;

// Feeds what the remote's watch store observes into the target's sync store.
class MirrorObserver : public store::Observer {
 public:
  MirrorObserver(store::SyncStore& sync, std::string cluster, std::string prefix)
      : sync_(sync), cluster_(std::move(cluster)), prefix_(std::move(prefix)) {}

  void OnUpdate(const store::Key& key) override {
    if (absl::Status status = sync_.UpsertKey(Context::Background(), key); !status.ok()) {
      spdlog::warn("cannot mirror update cluster={} prefix={} key={} error={}", cluster_, prefix_,
                   key.GetKeyName(), status.ToString());
    }
  }

  void OnDelete(const store::NamedKey& key) override {
    if (absl::Status status = sync_.DeleteKey(Context::Background(), key); !status.ok()) {
      spdlog::warn("cannot mirror delete cluster={} prefix={} key={} error={}", cluster_, prefix_,
                   key.GetKeyName(), status.ToString());
    }
  }

 private:
  store::SyncStore& sync_;
  const std::string cluster_;
  const std::string prefix_;
};

}  // namespace

struct RemoteMirror::PrefixMirror {
  MirroredPrefix prefix;  // source replaced only between connections, by the remote's tasks
  std::unique_ptr<store::internal::AsyncSyncStore> sync;
  std::unique_ptr<store::internal::AsyncWatchStore> watch;
  std::atomic<bool> synced = false;  // the target's canary was written
};

RemoteMirror::RemoteMirror(RemoteCluster spec, const MirrorEnv& env)
    : name_(spec.name), env_(env), spec_(std::move(spec)), strand_(env_.executor) {}

RemoteMirror::~RemoteMirror() { Stop(); }

void RemoteMirror::Start(const Context& parent) {
  auto [ctx, cancel] = WithCancel(parent);
  {
    MutexLock lock(mu_);
    if (started_ || stopped_) return;
    started_ = true;
    loop_running_ = true;
    cancel_ = std::move(cancel);
  }
  env_.metrics->SetReady(name_, false);
  kvstore::internal::Spawn(strand_, Loop(ctx), [this] {
    MutexLock lock(mu_);
    loop_running_ = false;
    loop_done_.notify_all();
  });
}

void RemoteMirror::Reconnect(RemoteCluster spec) {
  MutexLock lock(mu_);
  spec_ = std::move(spec);
  if (cancel_conn_) cancel_conn_();
}

void RemoteMirror::Stop() {
  MutexLock lock(mu_);
  stopped_ = true;
  if (cancel_) cancel_();
  loop_done_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !loop_running_; });
}

RemoteMirror::Task RemoteMirror::Loop(Context ctx) {
  Backoff backoff(kConnectRetryBase, kConnectRetryMax);
  while (!ctx.Done()) {
    RemoteCluster spec;
    Context conn;
    {
      MutexLock lock(mu_);
      spec = spec_;
      auto [c, cancel] = WithCancel(ctx);
      conn = c;
      cancel_conn_ = std::move(cancel);
    }
    absl::Status status = co_await Connect(ctx, conn, std::move(spec));
    if (ctx.Done()) break;
    if (status.ok()) {
      backoff.Reset();  // the connection was closed to connect again with a new spec
      continue;
    }
    RecordFailure(status);
    // Reconnect cuts the wait short: a new spec is worth trying at once.
    co_await Sleep(strand_, *env_.clock, backoff.Next(), conn);
  }
  {
    MutexLock lock(mu_);
    cancel_conn_ = nullptr;
  }
  // The sync stores run with `ctx`: they end now that it is done.
  co_await syncs_.Wait(strand_);
}

kvstore::internal::Task<absl::Status> RemoteMirror::Connect(Context ctx, Context conn,
                                                            RemoteCluster spec) {
  std::shared_ptr<Backend> remote = spec.backend;
  const bool opened = remote == nullptr;
  if (opened) {
    absl::StatusOr<std::shared_ptr<Backend>> open =
        co_await Blocking([&] { return env_.options->open_backend(spec); });
    if (!open.ok()) {
      co_return absl::Status(open.status().code(),
                             absl::StrCat("cannot open remote cluster ", name_, " from ",
                                          spec.config_path, ": ", open.status().message()));
    }
    remote = *std::move(open);
  }
  absl::Status status = co_await Mirror(std::move(ctx), std::move(conn), remote, std::move(spec));
  if (opened) {
    co_await Blocking([&] {
      remote->Close();
      return true;
    });
  }
  co_return status;
}

kvstore::internal::Task<absl::Status> RemoteMirror::Mirror(Context ctx, Context conn,
                                                           std::shared_ptr<Backend> remote,
                                                           RemoteCluster spec) {
  std::vector<MirroredPrefix> layout = spec.prefixes;
  bool wait_synced = spec.wait_source_synced;
  std::optional<ClusterConfig> config;
  if (layout.empty()) {
    config = co_await ReadClusterConfig(conn, *remote);
    if (!config.has_value()) co_return absl::OkStatus();  // `conn` is done
    layout = CiliumLayout(name_, config->capabilities);
    wait_synced = config->capabilities.synced_canaries;
  }

  // Every task of this connection; each ends once `conn` is done, and the connection ends once
  // they all did.
  WaitGroup tasks;
  if (config.has_value()) {
    // What the target's agents read: this remote is now served from a cache that writes
    // canaries.
    ClusterConfig local = *config;
    local.capabilities.synced_canaries = true;
    local.capabilities.cached = true;
    absl::Status status = co_await Blocking([&] {
      return SetClusterConfig(conn, *env_.options->target, name_, local, env_.options->lease);
    });
    if (!status.ok()) {
      if (conn.Done()) co_return absl::OkStatus();
      co_return absl::Status(status.code(),
                             absl::StrCat("cannot write the cluster config of ", name_,
                                          " into the target: ", status.message()));
    }
    tasks.Spawn(strand_, EnforceClusterConfig(conn, local));
  }

  UpdateMirrors(ctx, layout);
  {
    MutexLock lock(mu_);
    config_ = config;
    layout_ = layout;
  }
  const std::string status_text = co_await Blocking([&] { return remote->Status().message; });
  {
    MutexLock lock(mu_);
    status_text_ = status_text;
  }
  spdlog::info("remote cluster connected cluster={} prefixes={} wait_synced_canaries={}", name_,
               layout.size(), wait_synced);
  SetConnected(true);

  std::vector<PrefixMirror*> mirrors;
  for (const MirroredPrefix& prefix : layout) mirrors.push_back(mirrors_.at(prefix.name).get());
  if (wait_synced) {
    tasks.Spawn(strand_, WatchCanaries(conn, std::move(mirrors), *remote, tasks));
  } else {
    for (PrefixMirror* mirror : mirrors) tasks.Spawn(strand_, WatchSource(conn, *mirror, *remote));
  }
  tasks.Spawn(strand_, MonitorHealth(conn, *remote));
  if (config.has_value() && env_.options->remote_heartbeat_timeout > 0ms) {
    tasks.Spawn(strand_, WatchHeartbeat(conn, *remote));
  }
  co_await tasks.Wait(strand_);
  SetConnected(false);
  SetHeartbeat(false, std::nullopt);  // judged afresh by the next connection
  {
    MutexLock lock(mu_);
    watches_.clear();
  }
  spdlog::info("remote cluster disconnected cluster={}", name_);
  co_return absl::OkStatus();
}

kvstore::internal::Task<std::optional<ClusterConfig>> RemoteMirror::ReadClusterConfig(
    Context conn, Backend& remote) {
  Backoff backoff(kConnectRetryBase, kConnectRetryMax);
  while (!conn.Done()) {
    absl::StatusOr<std::optional<ClusterConfig>> got =
        co_await Blocking([&] { return GetClusterConfig(conn, remote, name_); });
    absl::Status problem;
    if (!got.ok()) {
      problem = absl::Status(
          got.status().code(),
          absl::StrCat("cannot read the cluster config of ", name_, ": ", got.status().message()));
    } else if (!got->has_value()) {
      problem = absl::NotFoundError(
          absl::StrCat(ClusterConfigPath(name_),
                       " not found in the remote cluster: check that the file is "
                       "named after the cluster and that the cluster writes its "
                       "config"));
    } else if (absl::Status valid = ValidateClusterConfig(**got); !valid.ok()) {
      problem = absl::InvalidArgumentError(
          absl::StrCat("cluster config of ", name_, ": ", valid.message()));
    } else {
      co_return **got;
    }
    if (conn.Done()) break;
    {
      MutexLock lock(mu_);
      status_text_ = std::string(problem.message());
    }
    RecordFailure(problem);
    co_await Sleep(strand_, *env_.clock, backoff.Next(), conn);
  }
  co_return std::nullopt;
}

RemoteMirror::Task RemoteMirror::EnforceClusterConfig(Context conn, ClusterConfig config) {
  Backend& target = *env_.options->target;
  const std::string key = ClusterConfigPath(name_);
  const std::string text = FormatClusterConfig(config);
  auto assert_config = [&](const Context& ctx) {
    absl::StatusOr<bool> wrote = target.UpdateIfDifferent(ctx, key, text, env_.options->lease);
    if (!wrote.ok() && !ctx.Done()) {
      spdlog::warn("cannot write cluster config cluster={} key={} error={}", name_, key,
                   wrote.status().ToString());
    } else if (wrote.ok() && *wrote) {
      spdlog::info("cluster config written cluster={} key={}", name_, key);
    }
    return true;
  };
  while (!conn.Done()) {
    // One round per refresh period (on the mesh's clock): written at its start, and whenever
    // the key is deleted or changed in the target meanwhile.
    auto [round, end_round] = WithTimeout(conn, env_.options->cluster_config_refresh, env_.clock);
    co_await Blocking([&, &round = round] { return assert_config(round); });
    std::shared_ptr<Watcher> watcher =
        target.ListAndWatchWith(round, key, 16, WatchOptions{.delete_values = false});
    std::deque<KeyValueEvent> events;
    bool listed = false;  // the key was in the watch's initial list
    while (co_await NextEvents(strand_, *watcher, round, &events)) {
      bool rewrite = false;
      for (const KeyValueEvent& event : events) {
        // Deleted between the write above and the list: no event will tell.
        if (event.type == EventType::kListDone) {
          rewrite = rewrite || !listed;
          continue;
        }
        // The watch matches by bytes: cilium/cluster-config/c1 also matches .../c10.
        if (event.key != key) continue;
        listed = true;
        rewrite = rewrite || event.type == EventType::kDelete || event.value != text;
      }
      events.clear();
      if (rewrite) co_await Blocking([&, &round = round] { return assert_config(round); });
    }
    watcher->Stop();
    end_round();
  }
}

void RemoteMirror::UpdateMirrors(const Context& ctx, const std::vector<MirroredPrefix>& layout) {
  std::vector<PrefixMirror*> dropped;
  {
    MutexLock lock(mu_);
    for (auto& [name, mirror] : mirrors_) {
      bool kept = false;
      for (const MirroredPrefix& prefix : layout) kept = kept || prefix.name == name;
      if (!kept) dropped.push_back(mirror.get());
    }
    for (const MirroredPrefix& prefix : layout) {
      auto it = mirrors_.find(prefix.name);
      if (it != mirrors_.end()) {
        PrefixMirror& existing = *it->second;
        if (existing.prefix.target == prefix.target &&
            existing.prefix.synced_key == prefix.synced_key) {
          existing.prefix = prefix;  // a new source at most: the watch store lists it afresh
          continue;
        }
        // Written elsewhere now: what went to the old target goes from there.
        dropped.push_back(it->second.get());
        retired_.push_back(std::move(it->second));
        mirrors_.erase(it);
      }
      auto mirror = std::make_unique<PrefixMirror>();
      mirror->prefix = prefix;
      store::WorkqueueSyncStoreOptions sync_options;
      sync_options.with_lease = env_.options->lease;
      sync_options.synced_key_override = prefix.synced_key;
      sync_options.metrics = env_.options->metrics;
      sync_options.clock = env_.clock;
      mirror->sync = store::internal::NewAsyncWorkqueueSyncStore(
          name_, env_.options->target, prefix.target, sync_options, env_.blocking);
      auto observer = std::make_shared<MirrorObserver>(*mirror->sync, name_, prefix.source);
      store::RestartableWatchStoreOptions watch_options;
      watch_options.metrics = env_.options->metrics;
      PrefixMirror* raw = mirror.get();
      watch_options.on_sync_callbacks.push_back([this, raw](const Context& watch_ctx) {
        auto on_canary = [this, raw](const Context&) {
          raw->synced = true;
          PrefixStatus status;
          {
            MutexLock lock(mu_);
            status = StatusOf(raw->prefix, raw);
          }
          spdlog::info("prefix mirrored cluster={} source={} target={} keys={}", name_,
                       status.source, status.target, status.keys);
          Emit(MeshEvent::Type::kPrefixSynced, status);
          UpdateReadiness();
        };
        if (absl::Status status = raw->sync->Synced(watch_ctx, {on_canary}); !status.ok()) {
          spdlog::error("cannot mark prefix synced cluster={} prefix={} error={}", name_,
                        raw->prefix.target, status.ToString());
        }
      });
      mirror->watch = store::internal::NewAsyncRestartableWatchStore(
          name_, store::KVPairCreator, observer, std::move(watch_options));
      syncs_.Spawn(strand_, mirror->sync->RunAsync(strand_, ctx));
      mirrors_.emplace(prefix.name, std::move(mirror));
    }
  }
  // A kind the remote no longer exports (its config changed): what it had goes from the target.
  for (PrefixMirror* mirror : dropped) mirror->watch->Drain();
}

RemoteMirror::Task RemoteMirror::WatchSource(Context conn, PrefixMirror& mirror,
                                             WatchStoreBackend& remote) {
  Backoff backoff(kRewatchBase, kRewatchMax);
  while (!conn.Done()) {
    spdlog::debug("watching remote cluster={} source={} target={}", name_, mirror.prefix.source,
                  mirror.prefix.target);
    const Clock::time_point started = env_.clock->Now();
    co_await mirror.watch->WatchAsync(strand_, conn, remote, mirror.prefix.source);
    if (conn.Done()) break;
    if (env_.clock->Now() - started > kHealthyWatch) backoff.Reset();
    const auto wait = backoff.Next();
    spdlog::warn("remote watch ended, watching again cluster={} source={} retry_in={}ms", name_,
                 mirror.prefix.source,
                 std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
    co_await Sleep(strand_, *env_.clock, wait, conn);
  }
}

RemoteMirror::Task RemoteMirror::WatchCanaries(Context conn, std::vector<PrefixMirror*> mirrors,
                                               Backend& remote, WaitGroup& tasks) {
  // What WatchStoreManagerSync does, on this strand: the canary's name below
  // cilium/synced/<cluster>/ is the source synced key a mirror waits for.
  const std::string canaries = std::string(kSyncedPrefix) + "/" + name_ + "/";
  std::map<std::string, PrefixMirror*, std::less<>> waiting;
  for (PrefixMirror* mirror : mirrors) waiting.emplace(mirror->prefix.source_synced_key, mirror);
  std::shared_ptr<Watcher> watcher =
      remote.ListAndWatchWith(conn, canaries, 64, WatchOptions{.delete_values = false});
  std::deque<KeyValueEvent> events;
  while (!waiting.empty() && co_await NextEvents(strand_, *watcher, conn, &events)) {
    for (const KeyValueEvent& event : events) {
      if (event.type != EventType::kCreate && event.type != EventType::kModify) continue;
      if (!event.key.starts_with(canaries)) continue;
      auto it = waiting.find(std::string_view(event.key).substr(canaries.size()));
      if (it == waiting.end()) continue;
      spdlog::debug("remote canary seen cluster={} key={}", name_, event.key);
      tasks.Spawn(strand_, WatchSource(conn, *it->second, remote));
      waiting.erase(it);
    }
    events.clear();
  }
  watcher->Stop();
}

RemoteMirror::Task RemoteMirror::MonitorHealth(Context conn, Backend& remote) {
  bool failing = false;
  while (co_await Sleep(strand_, *env_.clock, kHealthCheckInterval, conn)) {
    BackendStatus status = co_await Blocking([&] { return remote.Status(); });
    std::vector<WatchFreshness> watches = remote.Watches();
    {
      MutexLock lock(mu_);
      status_text_ = status.message;
      watches_ = std::move(watches);
    }
    const bool fails = status.state == BackendState::kFailure;
    if (fails == failing) continue;
    failing = fails;
    if (failing) RecordFailure(absl::UnavailableError(status.message));
    SetConnected(!failing);
  }
}

RemoteMirror::Task RemoteMirror::WatchHeartbeat(Context conn, Backend& remote) {
  const Clock::duration timeout = env_.options->remote_heartbeat_timeout;
  const std::string key(kHeartbeatPath);
  Clock::time_point last = env_.clock->Now();  // from the connection's start until the first
  bool stale = false;
  Backoff backoff(kRewatchBase, kRewatchMax);
  while (!conn.Done()) {
    std::shared_ptr<Watcher> watcher =
        remote.ListAndWatchWith(conn, key, 16, WatchOptions{.delete_values = false});
    std::deque<KeyValueEvent> events;
    while (!conn.Done()) {
      // Stale already: wait for the next write however long it takes.
      auto [round, end_round] =
          stale ? WithCancel(conn)
                : WithTimeout(conn, timeout - (env_.clock->Now() - last), env_.clock);
      const bool got = co_await NextEvents(strand_, *watcher, round, &events);
      const bool timed_out = !got && round.Done() && !conn.Done();
      end_round();
      if (timed_out) {
        stale = true;
        spdlog::warn("remote cluster heartbeat is stale cluster={} key={} not_seen_for={}s", name_,
                     key, std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
        SetHeartbeat(true, std::nullopt);
        continue;
      }
      if (!got) break;  // the watch ended (or `conn` is done)
      bool seen = false;
      for (const KeyValueEvent& event : events) {
        seen = seen || (event.key == key &&
                        (event.type == EventType::kCreate || event.type == EventType::kModify));
      }
      events.clear();
      if (!seen) continue;
      last = env_.clock->Now();
      if (stale) spdlog::info("remote cluster heartbeat seen again cluster={}", name_);
      stale = false;
      SetHeartbeat(false, env_.clock->WallNow());
    }
    watcher->Stop();
    if (conn.Done()) break;
    co_await Sleep(strand_, *env_.clock, backoff.Next(), conn);
  }
}

void RemoteMirror::SetHeartbeat(bool stale,
                                std::optional<std::chrono::system_clock::time_point> seen) {
  {
    MutexLock lock(mu_);
    heartbeat_stale_ = stale;
    if (seen.has_value()) last_heartbeat_ = seen;
  }
  UpdateReadiness();
}

void RemoteMirror::RecordFailure(const absl::Status& status) {
  std::chrono::system_clock::time_point now = env_.clock->WallNow();
  uint64_t failures;
  {
    MutexLock lock(mu_);
    failures = ++failures_;
    last_error_ = std::string(status.message());
    last_failure_ = now;
  }
  spdlog::warn("remote cluster failure cluster={} failures={} error={}", name_, failures,
               status.ToString());
  env_.metrics->SetFailures(name_, failures, now);
  Emit(MeshEvent::Type::kFailure, std::nullopt, std::string(status.message()));
}

void RemoteMirror::SetConnected(bool connected) {
  {
    MutexLock lock(mu_);
    if (connected_ == connected) return;
    connected_ = connected;
  }
  Emit(connected ? MeshEvent::Type::kConnected : MeshEvent::Type::kDisconnected);
  UpdateReadiness();
}

bool RemoteMirror::ReadyLocked() const {
  if (!connected_ || heartbeat_stale_ || layout_.empty()) return false;
  for (const MirroredPrefix& prefix : layout_) {
    auto it = mirrors_.find(prefix.name);
    if (it == mirrors_.end() || !it->second->synced) return false;
  }
  return true;
}

void RemoteMirror::UpdateReadiness() {
  bool ready;
  {
    MutexLock lock(mu_);
    ready = ReadyLocked();
    if (ready == ready_) return;
    ready_ = ready;
  }
  env_.metrics->SetReady(name_, ready);
}

void RemoteMirror::Emit(MeshEvent::Type type, std::optional<PrefixStatus> prefix,
                        std::string error) {
  env_.emit(MeshEvent{type, name_, std::move(prefix), std::move(error)});
}

PrefixStatus RemoteMirror::StatusOf(const MirroredPrefix& prefix,
                                    const PrefixMirror* mirror) const {
  PrefixStatus status;
  status.name = prefix.name;
  status.source = prefix.source;
  status.target = prefix.target;
  status.canary = SyncedKeyPath(name_, prefix.synced_key);
  if (mirror != nullptr) {
    status.synced = mirror->synced;
    status.keys = mirror->watch->NumEntries();
  }
  return status;
}

RemoteClusterStatus RemoteMirror::Status() const {
  MutexLock lock(mu_);
  RemoteClusterStatus status;
  status.name = name_;
  status.connected = connected_;
  status.ready = ReadyLocked();
  status.config = config_;
  status.status = status_text_;
  if (heartbeat_stale_) {
    status.status = absl::StrCat(
        "no write of ", std::string(kHeartbeatPath), " seen for ",
        std::chrono::duration_cast<std::chrono::seconds>(env_.options->remote_heartbeat_timeout)
            .count(),
        "s; ", status_text_);
  }
  status.last_heartbeat = last_heartbeat_;
  status.watches = watches_;
  status.failures = failures_;
  status.last_error = last_error_;
  status.last_failure = last_failure_;
  for (const MirroredPrefix& prefix : layout_) {
    auto it = mirrors_.find(prefix.name);
    status.prefixes.push_back(StatusOf(prefix, it == mirrors_.end() ? nullptr : it->second.get()));
  }
  return status;
}

std::vector<std::string> RemoteMirror::DrainPrefixes() const {
  MutexLock lock(mu_);
  return mesh::DrainPrefixes(name_, spec_.prefixes);
}

bool RemoteMirror::WritesClusterConfig() const {
  MutexLock lock(mu_);
  return spec_.prefixes.empty();
}

}  // namespace kvstore::mesh::internal

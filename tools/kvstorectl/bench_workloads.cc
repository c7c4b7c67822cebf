#include "bench_workloads.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/mesh/cluster_config.h"
#include "kvstore/mesh/mesh.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "kvstore/workqueue/rate_limiter.h"

namespace kvstorectl::bench {
namespace {

using namespace std::chrono_literals;
using kvstore::store::KVPair;

// Waits for a convergence that observers also announce; the poll only covers the case where an
// announcement is not enough (a key delivered twice), so it can be slow.
constexpr std::chrono::milliseconds kFallbackPoll{50};

using NameOf = std::function<std::string(int64_t)>;

std::string BackendKind(const BenchConfig& config) {
  return config.backend->UsesEtcd() ? "etcd" : "embedded";
}

absl::Status Annotate(const absl::Status& status, std::string_view context) {
  return absl::Status(status.code(), std::string(context) + ": " + std::string(status.message()));
}

// The reason a measured phase stopped before its end, once `phase_ctx` (a child of config.ctx
// with the timeout) is done. `progress` says how far it got; `cause` is the error a call returned
// meanwhile, if any (it often names the endpoint and the reason).
absl::Status PhaseFailure(const BenchConfig& config, const std::string& progress,
                          const absl::Status& cause = absl::OkStatus()) {
  std::string detail = progress;
  if (!cause.ok()) detail += "; last error: " + std::string(cause.message());
  if (config.ctx.Done()) return absl::CancelledError("interrupted (" + detail + ")");
  char seconds[32];
  std::snprintf(seconds, sizeof(seconds), "%g", config.timeout.count());
  return absl::DeadlineExceededError("the measured phase did not finish within --timeout " +
                                     std::string(seconds) + " s (" + detail + ")");
}

std::pair<kvstore::Context, kvstore::CancelFunc> PhaseContext(const BenchConfig& config) {
  return kvstore::WithTimeout(config.ctx,
                              std::chrono::duration_cast<std::chrono::nanoseconds>(config.timeout));
}

// Makes sure the backend answers before a measured phase: setting up the connection is not what
// the workloads measure, and an unreachable etcd is best reported as such.
absl::Status Connect(kvstore::Backend& backend, const BenchConfig& config) {
  auto [ctx, cancel] = PhaseContext(config);
  auto value = backend.Get(ctx, config.prefix);
  cancel();
  if (!value.ok()) return Annotate(value.status(), "connecting to the backend");
  return absl::OkStatus();
}

std::string OfTotal(int64_t done, int64_t total) {
  return std::to_string(done) + "/" + std::to_string(total);
}

// Closes a backend this run opened (never the process-wide embedded client).
class ClosesBackend {
 public:
  ClosesBackend(const BenchConfig& config, std::shared_ptr<kvstore::Backend> backend)
      : backend_(config.backend->UsesEtcd() ? std::move(backend) : nullptr) {}
  ClosesBackend(const ClosesBackend&) = delete;
  ClosesBackend& operator=(const ClosesBackend&) = delete;
  ~ClosesBackend() {
    if (backend_) backend_->Close();
  }

 private:
  std::shared_ptr<kvstore::Backend> backend_;
};

// Threads that wait for Start() before running `body(thread_index)`. Joined on destruction.
class Gang {
 public:
  Gang(int threads, std::function<void(int)> body) : body_(std::move(body)) {
    threads_.reserve(threads);
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, i] {
        gate_.wait();
        body_(i);
      });
    }
  }
  Gang(const Gang&) = delete;
  Gang& operator=(const Gang&) = delete;
  ~Gang() { Join(); }

  void Start() {
    if (!started_) gate_.count_down();
    started_ = true;
  }
  void Join() {
    Start();
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

 private:
  const std::function<void(int)> body_;
  std::latch gate_{1};
  bool started_ = false;  // only the owner's thread touches it
  std::vector<std::thread> threads_;
};

// Keeps the first error of several threads.
class FirstError {
 public:
  void Record(absl::Status status) {
    kvstore::MutexLock lock(mu_);
    if (status_.ok()) status_ = std::move(status);
    failed_ = true;
  }
  bool Failed() const { return failed_; }
  absl::Status Get() const {
    kvstore::MutexLock lock(mu_);
    return status_;
  }

 private:
  mutable kvstore::Mutex mu_;  // guards status_
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> failed_ = false;
};

// Writes keys 0..n-1 (KeyName) with `concurrency` callers of Backend::Update (no lease); calls
// `on_start` right before the callers start. Counts successful writes in `written`.
absl::Status WriteKeys(kvstore::Backend& backend, const kvstore::Context& ctx,
                       const BenchConfig& config, int64_t n, int concurrency,
                       std::atomic<int64_t>& written, const std::function<void()>& on_start) {
  kvstore::Context write_ctx;
  kvstore::CancelFunc cancel;
  std::tie(write_ctx, cancel) = kvstore::WithCancel(ctx);
  std::atomic<int64_t> next = 0;
  FirstError error;
  int callers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(concurrency, n)));
  Gang gang(callers, [&](int) {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      std::string name = KeyName(i);
      std::string key = kvstore::JoinPath(config.prefix, name);
      absl::Status status = backend.Update(write_ctx, key, ValueFor(name, config.value_size),
                                           /*lease=*/false);
      if (!status.ok()) {
        error.Record(Annotate(status, "writing " + key));
        cancel();
        return;
      }
      written.fetch_add(1, std::memory_order_relaxed);
    }
  });
  on_start();
  gang.Start();
  gang.Join();
  cancel();
  return error.Get();
}

// Writes keys 0..n-1 (KeyName) with Backend::UpdateAsync (no lease) from the caller's thread,
// keeping `in_flight` calls outstanding: each completion starts the next key. Calls `on_start`
// right before the first call. Counts successful writes in `written`.
absl::Status WriteKeysAsync(kvstore::Backend& backend, const kvstore::Context& ctx,
                            const BenchConfig& config, int64_t n, int in_flight,
                            std::atomic<int64_t>& written, const std::function<void()>& on_start) {
  // Shared with every completion, which may still be returning when the last credit was given
  // up and this function returned.
  struct State {
    State(kvstore::Backend& backend, const BenchConfig& config, int64_t n,
          std::atomic<int64_t>& written)
        : backend(backend), config(config), n(n), written(written) {}
    kvstore::Backend& backend;
    const BenchConfig& config;
    const int64_t n;
    std::atomic<int64_t>& written;
    kvstore::Context ctx;
    kvstore::CancelFunc cancel;
    FirstError error;
    kvstore::Mutex mu;  // guards the counts below
    kvstore::CondVar finished;
    int64_t next ABSL_GUARDED_BY(mu) = 0;
    int credits ABSL_GUARDED_BY(mu) = 0;  // to be used by the loop of whichever thread is issuing
    int outstanding ABSL_GUARDED_BY(mu) = 0;  // credits not given up yet
  };
  auto state = std::make_shared<State>(backend, config, n, written);
  std::tie(state->ctx, state->cancel) = kvstore::WithCancel(ctx);

  // Uses one credit: starts the next key, or gives the credit up when no key is left. A completion
  // that runs inside UpdateAsync (on this thread) leaves its credit to the loop below, so that the
  // stack does not grow with each key.
  struct Issuer {
    static void Issue(const std::shared_ptr<State>& s) {
      thread_local State* issuing = nullptr;
      {
        kvstore::MutexLock guard(s->mu);
        ++s->credits;
        if (issuing == s.get()) return;
      }
      issuing = s.get();
      while (true) {
        int64_t i = -1;
        {
          kvstore::MutexLock guard(s->mu);
          if (s->credits == 0) break;
          --s->credits;
          if (s->next < s->n && !s->error.Failed()) {
            i = s->next++;
          } else if (--s->outstanding == 0) {
            s->finished.notify_all();
          }
        }
        if (i < 0) continue;
        std::string name = KeyName(i);
        std::string key = kvstore::JoinPath(s->config.prefix, name);
        s->backend.UpdateAsync(s->ctx, key, ValueFor(name, s->config.value_size),
                               /*lease=*/false, [s, key](absl::Status status) {
                                 if (status.ok()) {
                                   s->written.fetch_add(1, std::memory_order_relaxed);
                                 } else {
                                   s->error.Record(Annotate(status, "writing " + key));
                                   s->cancel();
                                 }
                                 Issue(s);
                               });
      }
      issuing = nullptr;
    }
  };

  on_start();
  {
    kvstore::MutexLock guard(state->mu);
    state->outstanding = in_flight;
  }
  for (int i = 0; i < in_flight; ++i) Issuer::Issue(state);
  kvstore::MutexLock lock(state->mu);
  state->finished.wait(
      lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) { return state->outstanding == 0; });
  lock.unlock();
  state->cancel();
  return state->error.Get();
}

// Checks that keys 0..n-1 (named by `name_of`) are under the prefix with their ValueFor value,
// leased (or not) as expected.
absl::Status VerifyKeys(kvstore::Backend& backend, const BenchConfig& config, int64_t n,
                        const NameOf& name_of, bool leased) {
  auto pairs = backend.ListPrefix(config.ctx, config.prefix + "/");
  if (!pairs.ok()) return Annotate(pairs.status(), "listing " + config.prefix + " to verify");
  int64_t missing = 0, wrong_value = 0, wrong_lease = 0;
  std::string first;
  for (int64_t i = 0; i < n; ++i) {
    std::string name = name_of(i);
    std::string key = kvstore::JoinPath(config.prefix, name);
    auto it = pairs->find(key);
    const char* problem = nullptr;
    if (it == pairs->end()) {
      ++missing;
      problem = " is missing";
    } else if (it->second.data != ValueFor(name, config.value_size)) {
      ++wrong_value;
      problem = " has a wrong value";
    } else if ((it->second.lease_id != 0) != leased) {
      ++wrong_lease;
      problem = leased ? " has no lease" : " has a lease";
    }
    if (problem != nullptr && first.empty()) first = key + problem;
  }
  if (missing + wrong_value + wrong_lease == 0) return absl::OkStatus();
  return absl::DataLossError("verification failed: of " + std::to_string(n) + " keys, " +
                             std::to_string(missing) + " missing, " + std::to_string(wrong_value) +
                             " with a wrong value, " + std::to_string(wrong_lease) +
                             " with a wrong lease (first: " + first + ")");
}

absl::StatusOr<BenchOutcome> RunWrites(const BenchConfig& config, std::string_view workload) {
  auto backend = OpenBackend(*config.backend);
  if (!backend.ok()) return Annotate(backend.status(), "opening the backend");
  ClosesBackend closes(config, *backend);
  if (absl::Status status = Connect(**backend, config); !status.ok()) return status;

  auto [phase_ctx, cancel_phase] = PhaseContext(config);
  std::atomic<int64_t> written = 0;
  Progress progress(config.progress, std::string(workload),
                    [&] { return OfTotal(written.load(), config.keys) + " keys written"; });
  std::optional<MeasuredPhase> phase;
  absl::Status status = config.async
                            ? WriteKeysAsync(**backend, phase_ctx, config, config.keys,
                                             config.concurrency, written, [&] { phase.emplace(); })
                            : WriteKeys(**backend, phase_ctx, config, config.keys,
                                        config.concurrency, written, [&] { phase.emplace(); });
  BenchOutcome outcome;
  outcome.measurement = phase->Finish();
  progress.Stop();
  if (!status.ok()) {
    if (phase_ctx.Done()) {
      return PhaseFailure(config, OfTotal(written.load(), config.keys) + " written", status);
    }
    return status;
  }
  cancel_phase();

  outcome.keys = config.keys;
  outcome.fields = {{"concurrency", std::to_string(config.concurrency)},
                    {"value_size", std::to_string(config.value_size)},
                    {"backend", BackendKind(config)}};
  if (config.async) outcome.fields.emplace_back("async", "1");
  outcome.verification = VerifyKeys(**backend, config, config.keys, KeyName, /*leased=*/false);
  return outcome;
}

// Counts what a watch store delivers, and a digest of the delivered pairs that does not depend on
// their order (so it can be compared with a list of the prefix without keeping the pairs).
class DigestingObserver : public kvstore::store::Observer {
 public:
  static uint64_t Digest(std::string_view name, std::string_view value) {
    uint64_t h = Mix(std::hash<std::string_view>{}(name));
    return Mix(h ^ std::hash<std::string_view>{}(value));
  }

  void OnUpdate(const kvstore::store::Key& key) override {
    if (const auto* pair = dynamic_cast<const KVPair*>(&key)) {
      digest.fetch_add(Digest(pair->key, pair->value), std::memory_order_relaxed);
    } else {
      foreign.fetch_add(1, std::memory_order_relaxed);
    }
    updates.fetch_add(1, std::memory_order_relaxed);
  }
  void OnDelete(const kvstore::store::NamedKey&) override {
    deletes.fetch_add(1, std::memory_order_relaxed);
  }

  std::atomic<int64_t> updates = 0;
  std::atomic<int64_t> deletes = 0;
  std::atomic<int64_t> foreign = 0;  // keys that were not KVPairs
  std::atomic<uint64_t> digest = 0;  // sum of Digest() over the delivered pairs

 private:
  static uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
};

// Counts OnUpdate calls and announces when `target` is reached.
class ConvergenceObserver : public kvstore::store::Observer {
 public:
  ConvergenceObserver(int64_t target, Signal& reached) : target_(target), reached_(reached) {}
  void OnUpdate(const kvstore::store::Key&) override {
    if (updates.fetch_add(1, std::memory_order_relaxed) + 1 == target_) reached_.Notify();
  }
  void OnDelete(const kvstore::store::NamedKey&) override {}

  std::atomic<int64_t> updates = 0;

 private:
  const int64_t target_;
  Signal& reached_;
};

}  // namespace

absl::StatusOr<BenchOutcome> RunRaw(const BenchConfig& config) { return RunWrites(config, "raw"); }

absl::StatusOr<BenchOutcome> RunFill(const BenchConfig& config) {
  return RunWrites(config, "fill");
}

absl::StatusOr<BenchOutcome> RunSync(const BenchConfig& config) {
  auto backend = OpenBackend(*config.backend);
  if (!backend.ok()) return Annotate(backend.status(), "opening the backend");
  ClosesBackend closes(config, *backend);
  if (absl::Status status = Connect(**backend, config); !status.ok()) return status;

  // Declared before the store: its workers may call the Synced callback until Run returns.
  Signal signal;
  std::atomic<bool> synced = false;
  std::atomic<int64_t> queued = 0;

  kvstore::store::WorkqueueSyncStoreOptions options;
  options.workers = config.workers;
  options.with_lease = true;
  // Retries only: a first write is never delayed by the rate limiter.
  options.rate_limiter =
      std::make_shared<kvstore::workqueue::ItemExponentialFailureRateLimiter<std::string>>(1ms, 1s);
  auto store = kvstore::store::NewWorkqueueSyncStore(std::string(kBenchClusterName), *backend,
                                                     config.prefix, options);
  kvstore::Context run_ctx;
  kvstore::CancelFunc stop_run;
  std::tie(run_ctx, stop_run) = kvstore::WithCancel(config.ctx);
  std::thread runner([&store, run_ctx] { store->Run(run_ctx); });
  struct StopsRunner {
    kvstore::CancelFunc stop;
    std::thread& runner;
    ~StopsRunner() {
      stop();
      if (runner.joinable()) runner.join();
    }
  } stops_runner{stop_run, runner};

  auto [phase_ctx, cancel_phase] = PhaseContext(config);
  auto describe = [&] {
    return queued.load() < config.keys ? OfTotal(queued.load(), config.keys) + " keys queued"
                                       : std::to_string(config.keys) + " keys queued, writing";
  };
  Progress progress(config.progress, "sync", describe);
  MeasuredPhase phase;
  for (int64_t i = 0; i < config.keys; ++i) {
    std::string name = KeyName(i);
    KVPair key(name, ValueFor(name, config.value_size));
    if (absl::Status status = store->UpsertKey(phase_ctx, key); !status.ok()) {
      if (phase_ctx.Done()) return PhaseFailure(config, describe(), status);
      return Annotate(status, "upserting " + name);
    }
    queued.fetch_add(1, std::memory_order_relaxed);
  }
  absl::Status status = store->Synced(phase_ctx, {[&](const kvstore::Context&) {
                                        synced = true;
                                        signal.Notify();
                                      }});
  if (!status.ok() && !phase_ctx.Done()) return Annotate(status, "Synced");
  bool done = signal.WaitUntil(
      phase_ctx, [&] { return synced.load(); }, 1s);
  BenchOutcome outcome;
  outcome.measurement = phase.Finish();
  progress.Stop();
  if (!done) return PhaseFailure(config, describe() + ", synced key not written yet", status);
  cancel_phase();
  stop_run();
  runner.join();

  outcome.keys = config.keys;
  outcome.fields = {{"workers", std::to_string(config.workers)},
                    {"value_size", std::to_string(config.value_size)},
                    {"backend", BackendKind(config)}};
  outcome.verification = VerifyKeys(**backend, config, config.keys, KeyName, /*leased=*/true);
  if (outcome.verification.ok()) {
    std::string synced_key = kvstore::SyncedKeyPath(kBenchClusterName, config.prefix);
    auto value = (*backend)->Get(config.ctx, synced_key);
    if (!value.ok()) {
      outcome.verification = Annotate(value.status(), "reading " + synced_key);
    } else if (!value->has_value()) {
      outcome.verification =
          absl::DataLossError("verification failed: the synced key " + synced_key + " is missing");
    }
  }
  return outcome;
}

absl::StatusOr<BenchOutcome> RunWatch(const BenchConfig& config) {
  auto backend = OpenBackend(*config.backend, config.page_size);
  if (!backend.ok()) return Annotate(backend.status(), "opening the backend");
  ClosesBackend closes(config, *backend);
  if (absl::Status status = Connect(**backend, config); !status.ok()) return status;

  // The embedded store starts empty in every process: fill it here, outside the measured phase.
  int64_t fill_keys = config.fill_keys >= 0        ? config.fill_keys
                      : config.backend->UsesEtcd() ? 0
                                                   : config.keys;
  if (fill_keys > 0) {
    auto [fill_ctx, cancel_fill] = PhaseContext(config);
    std::atomic<int64_t> written = 0;
    Progress progress(config.progress, "watch: filling the prefix (not measured)",
                      [&] { return OfTotal(written.load(), fill_keys) + " keys written"; });
    absl::Status status =
        WriteKeys(**backend, fill_ctx, config, fill_keys, config.concurrency, written, [] {});
    progress.Stop();
    if (!status.ok()) {
      if (fill_ctx.Done()) {
        return PhaseFailure(config, "filling: " + OfTotal(written.load(), fill_keys) + " written",
                            status);
      }
      return status;
    }
  }

  // Declared before the store, which calls them until Watch returns.
  Signal signal;
  std::atomic<bool> synced = false;
  std::atomic<bool> watch_returned = false;
  auto observer = std::make_shared<DigestingObserver>();

  kvstore::store::RestartableWatchStoreOptions options;
  options.on_sync_callbacks.push_back([&](const kvstore::Context&) {
    synced = true;
    signal.Notify();
  });
  auto store = kvstore::store::NewRestartableWatchStore(
      std::string(kBenchClusterName), kvstore::store::KVPairCreator, observer, std::move(options));

  auto [phase_ctx, cancel_phase] = PhaseContext(config);
  kvstore::Context watch_ctx;
  kvstore::CancelFunc stop_watch;
  std::tie(watch_ctx, stop_watch) = kvstore::WithCancel(phase_ctx);
  auto describe = [&] { return std::to_string(observer->updates.load()) + " keys received"; };
  Progress progress(config.progress, "watch", describe);
  MeasuredPhase phase;
  std::thread watcher([&, watch_ctx] {
    store->Watch(watch_ctx, **backend, config.prefix);
    watch_returned = true;
    signal.Notify();
  });
  signal.WaitUntil(
      phase_ctx, [&] { return synced || watch_returned; }, 1s);
  BenchOutcome outcome;
  outcome.measurement = phase.Finish();
  progress.Stop();
  stop_watch();
  watcher.join();
  if (!synced) {
    if (phase_ctx.Done()) return PhaseFailure(config, describe());
    return absl::UnavailableError("the watch of " + config.prefix +
                                  " ended before its initial list was complete (" + describe() +
                                  ")");
  }
  cancel_phase();

  outcome.keys = config.keys;
  outcome.fields = {
      {"page_size", std::to_string(config.page_size)},
      {"backend", BackendKind(config)},
  };
  const int64_t delivered = observer->updates.load();
  if (delivered != config.keys) {
    outcome.verification = absl::FailedPreconditionError(
        "the prefix " + config.prefix + " holds " + std::to_string(delivered) +
        " keys but --keys is " + std::to_string(config.keys) +
        (config.backend->UsesEtcd()
             ? " (fill it first: kvstorectl bench fill --keys " + std::to_string(config.keys) + ")"
             : ""));
    return outcome;
  }
  std::string list_prefix = config.prefix + "/";
  auto pairs = (*backend)->ListPrefix(config.ctx, list_prefix);
  if (!pairs.ok()) {
    outcome.verification = Annotate(pairs.status(), "listing " + config.prefix + " to verify");
    return outcome;
  }
  uint64_t expected_digest = 0;
  for (const auto& [key, value] : *pairs) {
    expected_digest +=
        DigestingObserver::Digest(std::string_view(key).substr(list_prefix.size()), value.data);
  }
  if (static_cast<int64_t>(pairs->size()) != delivered || observer->digest != expected_digest ||
      observer->foreign != 0 || observer->deletes != 0 ||
      static_cast<int64_t>(store->NumEntries()) != delivered) {
    outcome.verification = absl::DataLossError(
        "verification failed: the observer received " + std::to_string(delivered) + " keys (" +
        std::to_string(observer->deletes.load()) + " deletes), the store holds " +
        std::to_string(store->NumEntries()) + ", the prefix " + std::to_string(pairs->size()) +
        (observer->digest != expected_digest ? "; the delivered values differ" : ""));
  }
  return outcome;
}

namespace {

// The number of threads of this process now.
int64_t ThreadsNow() {
  std::error_code error;
  std::filesystem::directory_iterator it("/proc/self/task", error);
  if (error) return 0;
  return static_cast<int64_t>(std::distance(it, std::filesystem::directory_iterator()));
}

// The most threads seen by Sample, from any thread.
class PeakThreads {
 public:
  PeakThreads() : peak_(ThreadsNow()) {}
  void Sample() {
    int64_t now = ThreadsNow();
    int64_t seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
  }
  int64_t Peak() const { return peak_.load(); }

 private:
  std::atomic<int64_t> peak_;
};

}  // namespace

absl::StatusOr<BenchOutcome> RunShared(const BenchConfig& config) {
  const int k = config.collaborators;
  const int64_t m = config.keys_per_collaborator;
  const int64_t total = k * m;

  std::vector<std::shared_ptr<kvstore::Backend>> clients;
  std::shared_ptr<kvstore::memory::InMemoryStore> memory;  // the server of the embedded clients
  if (config.backend->UsesEtcd()) {
    auto etcd_config = config.backend->EtcdConfig();
    if (!etcd_config.ok()) return Annotate(etcd_config.status(), "opening the backend");
    for (int i = 0; i < k; ++i) {
      auto client = kvstore::etcd::NewEtcdBackend(*etcd_config);
      if (!client.ok()) return Annotate(client.status(), "opening the backend");
      clients.push_back(*std::move(client));
    }
  } else {
    memory = kvstore::memory::InMemoryStore::Create();
    for (int i = 0; i < k; ++i) {
      clients.push_back(memory->NewClient("collaborator" + std::to_string(i)));
    }
  }
  struct ClosesClients {
    std::vector<std::shared_ptr<kvstore::Backend>>& clients;
    ~ClosesClients() {
      for (auto& client : clients) client->Close();
    }
  } closes{clients};
  for (auto& client : clients) {
    if (absl::Status status = Connect(*client, config); !status.ok()) return status;
  }

  // Keys left by an earlier run would count as seen.
  if (absl::Status status = clients[0]->DeletePrefix(config.ctx, config.prefix + "/");
      !status.ok()) {
    return Annotate(status, "clearing " + config.prefix);
  }

  // Declared before the stores, whose observers use it until they are released.
  Signal signal;
  struct Collaborator {
    std::shared_ptr<ConvergenceObserver> observer;
    std::unique_ptr<kvstore::store::SharedStore> store;
  };
  std::vector<Collaborator> collaborators;
  kvstore::Context store_ctx;
  kvstore::CancelFunc stop_stores;
  std::tie(store_ctx, stop_stores) = kvstore::WithCancel(config.ctx);
  struct ReleasesStores {
    std::vector<Collaborator>& collaborators;
    kvstore::CancelFunc stop;
    ~ReleasesStores() {
      stop();
      for (auto& c : collaborators) c.store->Release();
    }
  } releases{collaborators, stop_stores};
  for (int i = 0; i < k; ++i) {
    Collaborator c;
    c.observer = std::make_shared<ConvergenceObserver>(total, signal);
    kvstore::store::Configuration store_config;
    store_config.prefix = config.prefix;
    store_config.key_creator = kvstore::store::KVPairCreator;
    store_config.backend = clients[i];
    store_config.observer = c.observer;
    store_config.context = store_ctx;
    auto joined = kvstore::store::SharedStore::Join(std::move(store_config));
    if (!joined.ok()) {
      return Annotate(joined.status(), "collaborator " + std::to_string(i) + " joining");
    }
    c.store = *std::move(joined);
    collaborators.push_back(std::move(c));
  }

  // Every store joined, no writer started yet: what k idle stores cost.
  const int64_t joined_threads = ThreadsNow();
  PeakThreads peak_threads;  // sampled while the stores work, the k writers' threads included

  auto [phase_ctx, cancel_phase] = PhaseContext(config);
  std::atomic<int64_t> written = 0;
  FirstError error;
  // When the last writer's last write returned: shows whether etcd's accepting the writes or the
  // fan-out of the events to every collaborator took the time.
  std::atomic<int> writers_left = k;
  std::chrono::steady_clock::time_point writes_done;
  Gang writers(k, [&, &phase_ctx = phase_ctx](int i) {
    for (int64_t j = 0; j < m; ++j) {
      std::string name = CollaboratorKeyName(i, j);
      KVPair key(name, ValueFor(name, config.value_size));
      absl::Status status = collaborators[i].store->UpdateLocalKeySync(phase_ctx, key);
      if (!status.ok()) {
        error.Record(Annotate(status, "collaborator " + std::to_string(i) + " writing " + name));
        signal.Notify();
        return;
      }
      written.fetch_add(1, std::memory_order_relaxed);
    }
    if (writers_left.fetch_sub(1) == 1) writes_done = std::chrono::steady_clock::now();
  });
  auto least_seen = [&] {
    int64_t least = total;
    for (const auto& c : collaborators) least = std::min<int64_t>(least, c.store->NumEntries());
    return least;
  };
  auto describe = [&] {
    return OfTotal(written.load(), total) + " written, every collaborator sees at least " +
           std::to_string(least_seen());
  };
  Progress progress(config.progress, "shared", describe);
  MeasuredPhase phase;
  writers.Start();
  bool converged = signal.WaitUntil(
      phase_ctx,
      [&] {
        peak_threads.Sample();
        return error.Failed() || least_seen() == total;
      },
      kFallbackPoll);
  BenchOutcome outcome;
  outcome.measurement = phase.Finish();
  progress.Stop();
  writers.Join();
  if (!converged || error.Failed()) {
    // A timeout or interrupt also makes the writers fail: report the cause, not the symptom.
    if (phase_ctx.Done()) return PhaseFailure(config, describe(), error.Get());
    return error.Get();
  }
  cancel_phase();

  outcome.keys = total;
  outcome.fields = {
      {"collaborators", std::to_string(k)},
      {"keys_per_collaborator", std::to_string(m)},
      {"value_size", std::to_string(config.value_size)},
      {"backend", BackendKind(config)},
      {"threads_joined", std::to_string(joined_threads)},
      {"threads", std::to_string(peak_threads.Peak())},
      {"writes_seconds",
       absl::StrFormat("%.3f",
                       std::chrono::duration<double>(writes_done - phase.start()).count())}};
  auto name_of = [m](int64_t i) { return CollaboratorKeyName(static_cast<int>(i / m), i % m); };
  for (int i = 0; i < k && outcome.verification.ok(); ++i) {
    auto seen = collaborators[i].store->SharedKeysMap();
    int64_t right = 0;
    for (int64_t n = 0; n < total; ++n) {
      std::string name = name_of(n);
      auto it = seen.find(name);
      const auto* pair = it == seen.end() ? nullptr : dynamic_cast<const KVPair*>(it->second.get());
      if (pair != nullptr && pair->value == ValueFor(name, config.value_size)) ++right;
    }
    if (right != total || static_cast<int64_t>(seen.size()) != total) {
      outcome.verification = absl::DataLossError(
          "verification failed: collaborator " + std::to_string(i) + " sees " +
          std::to_string(seen.size()) + " keys, " + std::to_string(right) + " of the " +
          std::to_string(total) + " written ones with their value");
    }
  }
  if (outcome.verification.ok()) {
    outcome.verification = VerifyKeys(*clients[0], config, total, name_of, /*leased=*/true);
  }
  // Leave nothing behind: the keys are leased, but the lease outlives this process.
  for (auto& c : collaborators) c.store->Release();
  if (absl::Status status = clients[0]->DeletePrefix(config.ctx, config.prefix + "/");
      !status.ok() && outcome.verification.ok()) {
    outcome.verification = Annotate(status, "clearing " + config.prefix + " after the run");
  }
  return outcome;
}

namespace {

// The name of remote cluster `i` (1-based) of the mesh workload.
std::string MeshClusterName(int i) { return absl::StrFormat("cluster-%03d", i); }

}  // namespace

absl::StatusOr<BenchOutcome> RunMesh(const BenchConfig& config) {
  const int n = config.clusters;
  const int64_t k = config.keys_per_cluster;
  const int64_t total = n * k;
  const std::string nodes = std::string(kvstore::kBaseKeyPrefix) + "/state/nodes/v1";

  // The remote clusters' keys, in Cilium's layout: each cluster's config and k node keys, all
  // served by one etcd (or one embedded store).
  std::shared_ptr<kvstore::memory::InMemoryStore> sources;  // without --endpoints
  std::function<absl::StatusOr<std::shared_ptr<kvstore::Backend>>()> open_source;
  if (config.backend->UsesEtcd()) {
    auto etcd_config = config.backend->EtcdConfig();
    if (!etcd_config.ok()) return Annotate(etcd_config.status(), "opening the backend");
    open_source = [etcd_config = *etcd_config]() {
      return kvstore::etcd::NewEtcdBackend(etcd_config);
    };
  } else {
    sources = kvstore::memory::InMemoryStore::Create();
    open_source = [sources]() -> absl::StatusOr<std::shared_ptr<kvstore::Backend>> {
      return sources->NewClient("remote");
    };
  }
  auto writer = open_source();
  if (!writer.ok()) return Annotate(writer.status(), "opening the backend");
  if (absl::Status status = Connect(**writer, config); !status.ok()) return status;
  for (int i = 1; i <= n; ++i) {
    const std::string cluster = MeshClusterName(i);
    // Keys of an earlier run with more keys per cluster would be mirrored too.
    if (absl::Status status = (*writer)->DeletePrefix(config.ctx, nodes + "/" + cluster + "/");
        !status.ok()) {
      return Annotate(status, "clearing " + cluster);
    }
    kvstore::mesh::ClusterConfig cluster_config;
    cluster_config.id = static_cast<uint32_t>(i);
    if (absl::Status status = kvstore::mesh::SetClusterConfig(config.ctx, **writer, cluster,
                                                              cluster_config, /*lease=*/false);
        !status.ok()) {
      return Annotate(status, "writing the cluster config of " + cluster);
    }
    for (int64_t j = 0; j < k; ++j) {
      const std::string name = cluster + "/" + KeyName(j);
      if (absl::Status status = (*writer)->Update(config.ctx, nodes + "/" + name,
                                                  ValueFor(name, config.value_size), false);
          !status.ok()) {
        return Annotate(status, "writing " + name);
      }
    }
  }

  // The target: an embedded store (a target etcd shared with the sources would hold both
  // clusters' configs under one key).
  auto target_store = kvstore::memory::InMemoryStore::Create();
  std::shared_ptr<kvstore::Backend> target = target_store->NewClient("target");
  kvstore::mesh::MeshOptions options;
  options.target = target;
  options.heartbeat_interval = std::chrono::milliseconds(0);
  options.open_backend = [&open_source](const kvstore::mesh::RemoteCluster&) {
    return open_source();
  };

  std::atomic<int64_t> peak_threads = ThreadsNow();
  auto sample_threads = [&] {
    int64_t now = ThreadsNow();
    int64_t seen = peak_threads.load();
    while (now > seen && !peak_threads.compare_exchange_weak(seen, now)) {
    }
  };
  auto [phase_ctx, cancel_phase] = PhaseContext(config);
  auto [mesh_ctx, stop_mesh] = kvstore::WithCancel(config.ctx);
  MeasuredPhase phase;
  auto mesh = kvstore::mesh::Mesh::New(options);
  if (!mesh.ok()) return Annotate(mesh.status(), "creating the mesh");
  for (int i = 1; i <= n; ++i) {
    kvstore::mesh::RemoteCluster remote;
    remote.name = MeshClusterName(i);
    remote.config_path = "bench";  // opened by open_source, not read
    if (absl::Status status = (*mesh)->AddCluster(std::move(remote)); !status.ok()) {
      return Annotate(status, "adding " + MeshClusterName(i));
    }
  }
  std::thread runner([&mesh, ctx = mesh_ctx] {
    pthread_setname_np(pthread_self(), "kvctl-mesh-run");
    (*mesh)->Run(ctx);
  });
  struct StopsMesh {
    kvstore::CancelFunc stop;
    std::thread& runner;
    ~StopsMesh() {
      stop();
      if (runner.joinable()) runner.join();
    }
  } stops{stop_mesh, runner};

  auto ready_and_mirrored = [&](int64_t* ready_clusters, int64_t* mirrored) {
    *ready_clusters = 0;
    *mirrored = 0;
    for (const auto& status : (*mesh)->Status()) {
      if (status.ready) ++*ready_clusters;
      for (const auto& prefix : status.prefixes) {
        if (prefix.target.find("/nodes/") != std::string::npos) {
          *mirrored += static_cast<int64_t>(prefix.keys);
        }
      }
    }
  };
  auto describe = [&] {
    int64_t ready = 0, mirrored = 0;
    ready_and_mirrored(&ready, &mirrored);
    return OfTotal(ready, n) + " clusters ready, " + OfTotal(mirrored, total) + " keys mirrored";
  };
  Progress progress(config.progress, "mesh", describe);
  bool converged = false;
  auto last_status = std::chrono::steady_clock::now() - 1h;
  while (!phase_ctx.Done()) {
    sample_threads();
    if (std::chrono::steady_clock::now() - last_status >= 20ms) {
      last_status = std::chrono::steady_clock::now();
      int64_t ready = 0, mirrored = 0;
      ready_and_mirrored(&ready, &mirrored);
      if (ready == n && mirrored == total) {
        converged = true;
        break;
      }
    }
    phase_ctx.WaitFor(2ms);
  }
  BenchOutcome outcome;
  outcome.measurement = phase.Finish();
  progress.Stop();
  if (!converged) return PhaseFailure(config, describe(), absl::OkStatus());
  cancel_phase();

  outcome.keys = total;
  outcome.fields = {{"clusters", std::to_string(n)},
                    {"keys_per_cluster", std::to_string(k)},
                    {"threads", std::to_string(peak_threads.load())},
                    {"value_size", std::to_string(config.value_size)},
                    {"backend", BackendKind(config)}};
  // Every key and canary, as the target's agents would read them.
  const std::string cache = std::string(kvstore::kBaseKeyPrefix) + "/cache/nodes/v1";
  auto mirrored = target->ListPrefix(config.ctx, cache + "/");
  if (!mirrored.ok()) {
    outcome.verification = Annotate(mirrored.status(), "listing the target");
  } else {
    int64_t right = 0;
    for (int i = 1; i <= n; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        const std::string name = MeshClusterName(i) + "/" + KeyName(j);
        auto it = mirrored->find(cache + "/" + name);
        if (it != mirrored->end() && it->second.data == ValueFor(name, config.value_size)) ++right;
      }
      auto canary = target->Get(
          config.ctx, std::string(kvstore::kSyncedPrefix) + "/" + MeshClusterName(i) + "/" + cache);
      if (!canary.ok() || !canary->has_value()) {
        outcome.verification = absl::DataLossError("verification failed: no nodes canary of " +
                                                   MeshClusterName(i) + " in the target");
        break;
      }
    }
    if (outcome.verification.ok() &&
        (right != total || static_cast<int64_t>(mirrored->size()) != total)) {
      outcome.verification = absl::DataLossError(
          "verification failed: the target holds " + std::to_string(mirrored->size()) +
          " node keys, " + std::to_string(right) + " of the " + std::to_string(total) +
          " written ones with their value");
    }
  }
  for (int i = 1; i <= n; ++i) {
    (void)(*writer)->DeletePrefix(config.ctx, nodes + "/" + MeshClusterName(i) + "/");
  }
  return outcome;
}

}  // namespace kvstorectl::bench

#include "sim/sim.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/task.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/executor.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "store/async_stores.h"

namespace kvstore::sim {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using store::internal::AsyncSyncStore;
using store::internal::AsyncWatchStore;

constexpr char kCluster[] = "sim";
constexpr char kRoot[] = "sim";  // every writer's prefix is sim/<owner>; readers watch sim

// The seed's random stream: splitmix64, whose every draw also goes into the run's hash.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t* hash) : state_(seed), hash_(hash) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    Mix(*hash_, z);
    return z;
  }
  // Uniform in [lo, hi].
  int64_t Uniform(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }
  double Real() { return static_cast<double>(Next() >> 11) / static_cast<double>(1ULL << 53); }
  bool Chance(double p) { return p > 0 && Real() < p; }

  static void Mix(uint64_t& hash, uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      hash ^= (v >> (8 * i)) & 0xff;
      hash *= 0x100000001b3ULL;
    }
  }
  static void Mix(uint64_t& hash, std::string_view s) {
    for (char c : s) {
      hash ^= static_cast<unsigned char>(c);
      hash *= 0x100000001b3ULL;
    }
    Mix(hash, static_cast<uint64_t>(s.size()));
  }

 private:
  uint64_t state_;
  uint64_t* hash_;
};

// The fault rates and sizes one seed picks.
struct Options {
  int writers = 0;
  int readers = 0;
  int keys_per_writer = 0;
  int workers = 1;
  size_t batch = 1;
  seconds lease_ttl{0};
  size_t max_keys_per_lease = 0;     // small: a session holds several leases
  size_t max_history_revisions = 0;  // small: lagging watchers re-list more often
  int steps = 0;
  double p_op = 0;  // a writer's upsert/delete per step
  // Fault rates, per step (per write for the write faults).
  double p_write_fail = 0;
  double p_write_applied_fail = 0;
  double p_session_expiry = 0;
  double p_compact = 0;
  double p_stream_end = 0;
  double p_clock_jump = 0;
  double p_writer_crash = 0;
  double p_reader_crash = 0;
  double p_slow_observer = 0;
  double p_restart = 0;  // a dead collaborator comes back

  std::string ToString() const {
    return absl::StrCat("writers=", writers, " readers=", readers, " keys=", keys_per_writer,
                        " workers=", workers, " batch=", batch, " lease_ttl=", lease_ttl.count(),
                        "s keys_per_lease=", max_keys_per_lease, " history=", max_history_revisions,
                        " steps=", steps, " p_op=", p_op, " rates: write_fail=", p_write_fail,
                        " write_applied_fail=", p_write_applied_fail,
                        " session_expiry=", p_session_expiry, " compact=", p_compact,
                        " stream_end=", p_stream_end, " clock_jump=", p_clock_jump,
                        " writer_crash=", p_writer_crash, " reader_crash=", p_reader_crash,
                        " slow_observer=", p_slow_observer, " restart=", p_restart);
  }
};

// A fault rate: off for about a third of the seeds, else within [lo, hi].
double Rate(Rng& rng, double lo, double hi) {
  if (rng.Uniform(0, 2) == 0) return 0;
  return lo + (hi - lo) * rng.Real();
}

Options PickOptions(Rng& rng, double length) {
  Options o;
  o.writers = static_cast<int>(rng.Uniform(1, 4));
  o.readers = static_cast<int>(rng.Uniform(1, 3));
  o.keys_per_writer = static_cast<int>(rng.Uniform(2, 8));
  o.workers = static_cast<int>(rng.Uniform(1, 2));
  o.batch = rng.Chance(0.5) ? 1 : 4;
  o.lease_ttl = seconds(rng.Uniform(5, 60));
  o.max_keys_per_lease = rng.Chance(0.3) ? static_cast<size_t>(rng.Uniform(1, 3)) : 1000;
  o.max_history_revisions = rng.Chance(0.3) ? static_cast<size_t>(rng.Uniform(2, 50)) : 100000;
  o.steps = static_cast<int>(static_cast<double>(rng.Uniform(1500, 4000)) * length);
  o.p_op = 0.02 + 0.1 * rng.Real();
  o.p_write_fail = Rate(rng, 0.01, 0.3);
  o.p_write_applied_fail = Rate(rng, 0.01, 0.15);
  o.p_session_expiry = Rate(rng, 0.0005, 0.005);
  o.p_compact = Rate(rng, 0.001, 0.02);
  o.p_stream_end = Rate(rng, 0.0005, 0.005);
  o.p_clock_jump = Rate(rng, 0.0005, 0.003);
  o.p_writer_crash = Rate(rng, 0.0002, 0.002);
  o.p_reader_crash = Rate(rng, 0.0002, 0.002);
  o.p_slow_observer = Rate(rng, 0.001, 0.01);
  o.p_restart = 0.002 + 0.01 * rng.Real();
  return o;
}

// "o1:k3:17" -> 17; 0 when the value is not one of ours.
uint64_t SeqOf(std::string_view value) {
  size_t colon = value.rfind(':');
  if (colon == std::string_view::npos) return 0;
  uint64_t seq = 0;
  for (char c : value.substr(colon + 1)) {
    if (c < '0' || c > '9') return 0;
    seq = seq * 10 + static_cast<uint64_t>(c - '0');
  }
  return seq;
}

class Simulation;

// A writer's backend: the in-memory client with the seed's write faults in front of it: a write
// refused before it applied, or applied and then reported failed (the reply lost).
class FaultyBackend final : public Backend {
 public:
  FaultyBackend(Simulation& sim, int writer, int incarnation, std::shared_ptr<Backend> inner,
                size_t batch)
      : sim_(sim),
        writer_(writer),
        incarnation_(incarnation),
        inner_(std::move(inner)),
        batch_(batch) {}

  absl::Status Update(const Context& ctx, std::string_view key, std::string_view value,
                      bool lease) override;
  absl::Status Delete(const Context& ctx, std::string_view key) override;
  size_t MaxBatchOps() const override { return batch_; }
  void RegisterLeaseExpiredObserver(std::string_view prefix,
                                    std::function<void(std::string_view key)> fn) override {
    inner_->RegisterLeaseExpiredObserver(prefix, std::move(fn));
  }
  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override {
    return inner_->ListAndWatch(ctx, prefix, capacity);
  }
  absl::StatusOr<std::optional<std::string>> Get(const Context& ctx,
                                                 std::string_view key) override {
    return inner_->Get(ctx, key);
  }
  absl::StatusOr<KeyValuePairs> ListPrefix(const Context& ctx, std::string_view prefix) override {
    return inner_->ListPrefix(ctx, prefix);
  }
  absl::StatusOr<bool> UpdateIfDifferent(const Context& ctx, std::string_view key,
                                         std::string_view value, bool lease) override {
    return inner_->UpdateIfDifferent(ctx, key, value, lease);
  }
  absl::StatusOr<bool> CreateOnly(const Context& ctx, std::string_view key, std::string_view value,
                                  bool lease) override {
    return inner_->CreateOnly(ctx, key, value, lease);
  }
  absl::Status DeletePrefix(const Context& ctx, std::string_view prefix) override {
    return inner_->DeletePrefix(ctx, prefix);
  }
  BackendStatus Status() const override { return inner_->Status(); }
  void Close() override { inner_->Close(); }

 private:
  // Before the write: maybe refuse it. After: maybe report an applied write as failed.
  absl::Status Write(std::string_view key, const std::function<absl::Status()>& apply);

  Simulation& sim_;
  const int writer_;
  const int incarnation_;
  const std::shared_ptr<Backend> inner_;
  const size_t batch_;
};

// A reader's observer: checks each call against the key's history in the store.
class CheckingObserver final : public store::Observer {
 public:
  CheckingObserver(Simulation& sim, int reader) : sim_(sim), reader_(reader) {}
  void OnUpdate(const store::Key& key) override;
  void OnDelete(const store::NamedKey& key) override;

  // What this reader's cache holds: name (relative to sim/) -> value.
  std::map<std::string, std::string> cache;
  // Per absolute key, the index in the key's history of the last version observed (-1: none).
  std::map<std::string, int64_t> position;

 private:
  Simulation& sim_;
  const int reader_;
  bool in_call_ = false;
};

struct Writer {
  int id = 0;
  std::string name;    // o<id>
  std::string prefix;  // sim/o<id>
  std::string canary;  // cilium/synced/sim/sim/o<id>
  // Shared with Simulation::executors_, which outlives every store and client.
  std::shared_ptr<ManualExecutor> executor = std::make_shared<ManualExecutor>();
  bool alive = false;
  int incarnation = 0;
  std::shared_ptr<Backend> client;
  std::unique_ptr<AsyncSyncStore> store;
  CancelFunc cancel;
  std::shared_ptr<bool> running = std::make_shared<bool>(false);
  // What the owner wants in the store: key name -> value. Survives a crash (the agent reloads it).
  std::map<std::string, std::string> desired;
  std::map<std::string, uint64_t> next_seq;
  bool synced_called = false;
  // Keys upserted before Synced() (name -> sequence) that the canary must follow.
  std::map<std::string, uint64_t> before_synced;
  bool canary_checked = false;
};

struct Reader {
  int id = 0;
  std::shared_ptr<ManualExecutor> executor = std::make_shared<ManualExecutor>();
  bool alive = false;
  std::shared_ptr<Backend> client;
  std::unique_ptr<AsyncWatchStore> store;
  std::shared_ptr<CheckingObserver> observer;
  CancelFunc cancel;
  std::shared_ptr<bool> running = std::make_shared<bool>(false);
  bool restart_watch = false;  // a stream ended: watch again once the last Watch returned
  uint64_t slow_until = 0;     // step until which its observer does not run (a slow observer)
};

class Simulation {
 public:
  Simulation(uint64_t seed, const SimConfig& config) : config_(config), rng_(seed, &result_.hash) {
    result_.seed = seed;
    Rng::Mix(result_.hash, seed);
  }

  SimResult Run();

  // --- called by the collaborators' hooks ---
  void Violation(std::string what) {
    if (result_.violation.empty()) {
      result_.violation = absl::StrCat(what, " (step ", step_, ", t=", SimSeconds(), "s)");
    }
  }
  bool failed() const { return !result_.violation.empty(); }
  void Count(const char* fault) { ++result_.faults[fault]; }
  Rng& rng() { return rng_; }
  bool faults_on() const { return faults_on_; }
  const Options& options() const { return opts_; }
  void Trace(const std::string& line) {
    Rng::Mix(result_.hash, line);
    if (config_.trace) std::printf("[%.3f] %s\n", SimSeconds(), line.c_str());
  }
  // Records what the store holds now into every key's history.
  void Snapshot();
  void CheckCanary(int writer, int incarnation);
  void Observed(int reader, std::string_view name, std::optional<std::string_view> value);
  Writer& writer(int id) { return *writers_[static_cast<size_t>(id)]; }
  Reader& reader(int id) { return *readers_[static_cast<size_t>(id)]; }

 private:
  double SimSeconds() const {
    return std::chrono::duration<double>(clock_->Now() - start_).count();
  }

  void StartWriter(Writer& w);
  void CrashWriter(Writer& w);
  void StartReader(Reader& r);
  void StartWatch(Reader& r);
  void CrashReader(Reader& r);
  void ExpireSession(Writer& w);
  void WriterOp(Writer& w);
  void Faults();
  // Runs one task of a collaborator the seed picks; false when every executor is idle.
  bool RunOneTask(bool heal);
  // Moves the clock to the next timer (or by a little when none is pending); false when nothing
  // at all is scheduled.
  bool AdvanceToNextTimer();
  // Empty when the store and every live reader agree with what the live owners want.
  std::string Divergence() const;
  // A last burst of writes and faults, as when the faults stop in the middle of things.
  void Storm();
  // Stops the faults and runs until the store and every live reader converge.
  void Heal();
  void Shutdown();
  // Where each collaborator stands, for a report of a stuck run.
  std::string WaitSites() const;

  const SimConfig config_;
  SimResult result_;
  Rng rng_;
  Options opts_;
  bool faults_on_ = true;
  uint64_t step_ = 0;

  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  Clock::time_point start_ = clock_->Now();
  // Every executor, destroyed after the stores and clients whose tasks they run (a store shutting
  // down still posts to them).
  std::vector<std::shared_ptr<ManualExecutor>> executors_;
  std::shared_ptr<ManualExecutor> server_executor_ = std::make_shared<ManualExecutor>();
  std::shared_ptr<memory::InMemoryStore> store_;
  std::shared_ptr<Backend> truth_client_;  // the simulation's own view, never faulted
  std::vector<std::unique_ptr<Writer>> writers_;
  std::vector<std::unique_ptr<Reader>> readers_;

  // Every key's history as the store held it after each task: values, nullopt for a delete.
  std::map<std::string, std::vector<std::optional<std::string>>, std::less<>> history_;
  std::map<std::string, std::string, std::less<>> current_;
};

absl::Status FaultyBackend::Write(std::string_view key,
                                  const std::function<absl::Status()>& apply) {
  if (sim_.faults_on() && sim_.rng().Chance(sim_.options().p_write_fail)) {
    sim_.Count("write_fail");
    sim_.Trace(absl::StrCat("fault write_fail ", std::string(key)));
    return absl::UnavailableError("sim: write refused");
  }
  if (key == sim_.writer(writer_).canary) sim_.CheckCanary(writer_, incarnation_);
  sim_.Snapshot();  // what changed since the last snapshot, before this write
  absl::Status status = apply();
  sim_.Snapshot();
  if (status.ok() && sim_.faults_on() && sim_.rng().Chance(sim_.options().p_write_applied_fail)) {
    sim_.Count("write_applied_fail");
    sim_.Trace(absl::StrCat("fault write_applied_fail ", std::string(key)));
    return absl::UnavailableError("sim: write applied, reply lost");
  }
  return status;
}

absl::Status FaultyBackend::Update(const Context& ctx, std::string_view key, std::string_view value,
                                   bool lease) {
  return Write(key, [&] { return inner_->Update(ctx, key, value, lease); });
}

absl::Status FaultyBackend::Delete(const Context& ctx, std::string_view key) {
  return Write(key, [&] { return inner_->Delete(ctx, key); });
}

void CheckingObserver::OnUpdate(const store::Key& key) {
  if (in_call_) sim_.Violation(absl::StrCat("reader ", reader_, ": overlapping observer calls"));
  in_call_ = true;
  absl::StatusOr<std::string> value = key.Marshal();
  sim_.Observed(reader_, key.GetKeyName(), value.ok() ? *value : std::string("<marshal error>"));
  in_call_ = false;
}

void CheckingObserver::OnDelete(const store::NamedKey& key) {
  if (in_call_) sim_.Violation(absl::StrCat("reader ", reader_, ": overlapping observer calls"));
  in_call_ = true;
  sim_.Observed(reader_, key.GetKeyName(), std::nullopt);
  in_call_ = false;
}

void Simulation::Snapshot() {
  absl::StatusOr<KeyValuePairs> now = truth_client_->ListPrefix(Context::Background(), "");
  if (!now.ok()) {
    Violation(absl::StrCat("listing the store failed: ", now.status().ToString()));
    return;
  }
  for (auto it = current_.begin(); it != current_.end();) {
    if (!now->contains(it->first)) {
      history_[it->first].push_back(std::nullopt);
      Trace(absl::StrCat("store delete ", it->first));
      it = current_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [key, value] : *now) {
    auto it = current_.find(key);
    if (it != current_.end() && it->second == value.data) continue;
    history_[key].push_back(value.data);
    Trace(absl::StrCat("store put ", key, "=", value.data));
    current_[key] = value.data;
  }
}

void Simulation::CheckCanary(int writer_id, int incarnation) {
  Writer& w = writer(writer_id);
  if (w.incarnation != incarnation || !w.synced_called || w.canary_checked) return;
  Snapshot();
  for (const auto& [name, seq] : w.before_synced) {
    const std::string key = JoinPath(w.prefix, name);
    bool written = false;
    if (auto it = history_.find(key); it != history_.end()) {
      for (const auto& version : it->second) {
        if (version && SeqOf(*version) >= seq) written = true;
      }
    }
    if (!written) {
      Violation(absl::StrCat("canary: ", w.canary, " written before ", key, " (", w.name, ":", name,
                             ":", seq, "), upserted before Synced"));
      return;
    }
  }
  w.canary_checked = true;
}

void Simulation::Observed(int reader_id, std::string_view name,
                          std::optional<std::string_view> value) {
  Reader& r = reader(reader_id);
  CheckingObserver& o = *r.observer;
  const std::string key = JoinPath(kRoot, name);
  Trace(absl::StrCat("reader ", reader_id, value ? " update " : " delete ", key,
                     value ? absl::StrCat("=", std::string(*value)) : std::string()));
  const std::vector<std::optional<std::string>>* versions = nullptr;
  if (auto it = history_.find(key); it != history_.end()) versions = &it->second;
  auto pos_it = o.position.try_emplace(key, -1).first;
  const int64_t last = pos_it->second;
  const bool known = o.cache.contains(std::string(name));
  if (!value) {
    if (!known) {
      Violation(absl::StrCat("reader ", reader_id, ": double or spurious OnDelete of ", key));
      return;
    }
    // A delete of the key after the version last observed.
    int64_t found = -1;
    if (versions) {
      for (int64_t i = last + 1; i < static_cast<int64_t>(versions->size()); ++i) {
        if (!(*versions)[static_cast<size_t>(i)]) {
          found = i;
          break;
        }
      }
    }
    if (found < 0) {
      Violation(absl::StrCat("reader ", reader_id, ": spurious OnDelete of ", key,
                             " (last observed ", o.cache[std::string(name)],
                             "; the store never deleted it since)"));
      return;
    }
    pos_it->second = found;
    o.cache.erase(std::string(name));
    return;
  }
  // The value at or after the version last observed: values never go back.
  int64_t found = -1;
  if (versions) {
    for (int64_t i = std::max<int64_t>(last, 0); i < static_cast<int64_t>(versions->size()); ++i) {
      const auto& version = (*versions)[static_cast<size_t>(i)];
      if (version && *version == *value) {
        found = i;
        break;
      }
    }
  }
  if (found < 0) {
    bool ever = false;
    if (versions) {
      for (const auto& version : *versions) ever = ever || (version && *version == *value);
    }
    Violation(absl::StrCat("reader ", reader_id, ": OnUpdate ", key, "=", std::string(*value),
                           ever ? " goes back in the key's history (last observed "
                                : " was never in the store (last observed ",
                           known ? o.cache[std::string(name)] : std::string("none"), ")"));
    return;
  }
  pos_it->second = found;
  o.cache[std::string(name)] = std::string(*value);
}

void Simulation::StartWriter(Writer& w) {
  ++w.incarnation;
  w.alive = true;
  w.synced_called = false;
  w.canary_checked = false;
  w.before_synced.clear();
  w.client = store_->NewClient(absl::StrCat(w.name, "#", w.incarnation));
  auto backend = std::make_shared<FaultyBackend>(*this, w.id, w.incarnation, w.client, opts_.batch);
  store::WorkqueueSyncStoreOptions so;
  so.workers = static_cast<unsigned>(opts_.workers);
  so.clock = clock_;
  w.store = store::internal::NewAsyncWorkqueueSyncStore(kCluster, backend, w.prefix, so,
                                                        w.executor.get());
  auto [ctx, cancel] = WithCancel(Context::Background());
  w.cancel = cancel;
  w.running = std::make_shared<bool>(true);
  kvstore::internal::Spawn(*w.executor, w.store->RunAsync(*w.executor, ctx),
                           [running = w.running] { *running = false; });
  // A restarted agent upserts the state it had again.
  for (const auto& [name, value] : w.desired) {
    (void)w.store->UpsertKey(Context::Background(), store::KVPair(name, value));
  }
  Trace(absl::StrCat("start writer ", w.name, " incarnation ", w.incarnation));
}

void Simulation::CrashWriter(Writer& w) {
  Trace(absl::StrCat("crash writer ", w.name));
  w.alive = false;
  w.cancel();
  // The process is gone: no more keep-alives, its leases run out one TTL later.
  w.client->Close();
  w.store.reset();  // the running task keeps what it needs until it returns
}

void Simulation::StartReader(Reader& r) {
  r.alive = true;
  r.client = store_->NewClient(absl::StrCat("reader", r.id));
  r.observer = std::make_shared<CheckingObserver>(*this, r.id);
  r.store =
      store::internal::NewAsyncRestartableWatchStore(kCluster, store::KVPairCreator, r.observer);
  Trace(absl::StrCat("start reader ", r.id));
  StartWatch(r);
}

void Simulation::StartWatch(Reader& r) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  r.cancel = cancel;
  r.restart_watch = false;
  r.running = std::make_shared<bool>(true);
  kvstore::internal::Spawn(*r.executor, r.store->WatchAsync(*r.executor, ctx, *r.client, kRoot),
                           [running = r.running] { *running = false; });
}

void Simulation::CrashReader(Reader& r) {
  Trace(absl::StrCat("crash reader ", r.id));
  r.alive = false;
  r.restart_watch = false;
  r.cancel();
  r.client->Close();
}

void Simulation::WriterOp(Writer& w) {
  const std::string name = absl::StrCat("k", rng_.Uniform(0, opts_.keys_per_writer - 1));
  if (!w.synced_called && w.desired.size() >= 2 && rng_.Chance(0.1)) {
    // Every key upserted so far must be in the store before the canary.
    w.before_synced.clear();
    for (const auto& [key, value] : w.desired) w.before_synced[key] = SeqOf(value);
    w.synced_called = true;
    Trace(absl::StrCat("writer ", w.name, " synced"));
    // The callbacks run once, after the canary was written.
    auto calls = std::make_shared<int>(0);
    (void)w.store->Synced(
        Context::Background(),
        {[this, id = w.id, incarnation = w.incarnation, calls](const Context&) {
          Writer& writer = this->writer(id);
          Snapshot();
          if (++*calls > 1) {
            Violation(absl::StrCat("writer ", writer.name, ": Synced callback ran twice"));
          }
          if (writer.incarnation == incarnation && !writer.canary_checked) {
            Violation(absl::StrCat("writer ", writer.name,
                                   ": Synced callback ran before the canary was written"));
          }
        }});
    return;
  }
  if (w.desired.contains(name) && rng_.Chance(0.25)) {
    w.desired.erase(name);
    w.before_synced.erase(name);  // what follows is its delete
    Trace(absl::StrCat("writer ", w.name, " delete ", name));
    (void)w.store->DeleteKey(Context::Background(), store::KVPair(name, ""));
    return;
  }
  const uint64_t seq = ++w.next_seq[name];
  std::string value = absl::StrCat(w.name, ":", name, ":", seq);
  w.desired[name] = value;
  Trace(absl::StrCat("writer ", w.name, " upsert ", name, "=", value));
  (void)w.store->UpsertKey(Context::Background(), store::KVPair(name, value));
}

void Simulation::Faults() {
  const Options& o = opts_;
  if (rng_.Chance(o.p_session_expiry)) {
    Writer& w = writer(static_cast<int>(rng_.Uniform(0, o.writers - 1)));
    if (w.alive) {
      ExpireSession(w);
    }
  }
  if (rng_.Chance(o.p_compact)) {
    Count("compact");
    Trace(absl::StrCat("fault compact at ", store_->Revision()));
    store_->Compact(0);
  }
  if (rng_.Chance(o.p_stream_end)) {
    Reader& r = reader(static_cast<int>(rng_.Uniform(0, o.readers - 1)));
    if (r.alive && *r.running && !r.restart_watch) {
      Count("stream_end");
      Trace(absl::StrCat("fault stream_end reader ", r.id));
      r.restart_watch = true;
      r.cancel();
    }
  }
  if (rng_.Chance(o.p_clock_jump)) {
    Count("clock_jump");
    const milliseconds jump(rng_.Uniform(1000, 2 * 1000 * o.lease_ttl.count()));
    Trace(absl::StrCat("fault clock_jump ", jump.count(), "ms"));
    clock_->Advance(jump);
  }
  if (rng_.Chance(o.p_writer_crash)) {
    Writer& w = writer(static_cast<int>(rng_.Uniform(0, o.writers - 1)));
    if (w.alive) {
      Count("writer_crash");
      CrashWriter(w);
    }
  }
  if (rng_.Chance(o.p_reader_crash)) {
    Reader& r = reader(static_cast<int>(rng_.Uniform(0, o.readers - 1)));
    if (r.alive) {
      Count("reader_crash");
      CrashReader(r);
    }
  }
  if (rng_.Chance(o.p_slow_observer)) {
    Reader& r = reader(static_cast<int>(rng_.Uniform(0, o.readers - 1)));
    Count("slow_observer");
    r.slow_until = step_ + static_cast<uint64_t>(rng_.Uniform(10, 400));
    Trace(absl::StrCat("fault slow_observer reader ", r.id, " until step ", r.slow_until));
  }
  if (rng_.Chance(o.p_restart)) {
    Writer& w = writer(static_cast<int>(rng_.Uniform(0, o.writers - 1)));
    if (!w.alive) StartWriter(w);
  }
  if (rng_.Chance(o.p_restart)) {
    Reader& r = reader(static_cast<int>(rng_.Uniform(0, o.readers - 1)));
    if (!r.alive && !*r.running) StartReader(r);
  }
}

bool Simulation::RunOneTask(bool heal) {
  std::vector<ManualExecutor*> runnable;
  if (server_executor_->Pending() > 0) runnable.push_back(server_executor_.get());
  for (auto& w : writers_) {
    if (w->executor->Pending() > 0) runnable.push_back(w->executor.get());
  }
  for (auto& r : readers_) {
    if (r->executor->Pending() > 0 && (heal || r->slow_until <= step_)) {
      runnable.push_back(r->executor.get());
    }
  }
  if (runnable.empty()) return false;
  ManualExecutor* pick =
      runnable[static_cast<size_t>(rng_.Uniform(0, static_cast<int64_t>(runnable.size()) - 1))];
  pick->RunOne();
  ++result_.tasks_run;
  Snapshot();
  return true;
}

bool Simulation::AdvanceToNextTimer() {
  const Clock::time_point next = clock_->NextTimer();
  if (next == Clock::time_point::max()) return false;
  const Clock::duration d = std::max(next - clock_->Now(), Clock::duration::zero());
  Rng::Mix(result_.hash, static_cast<uint64_t>(d.count()));
  clock_->Advance(d);
  return true;
}

std::string Simulation::Divergence() const {
  // What the store must hold under sim/: the live owners' keys, nothing of the dead ones.
  std::map<std::string, std::string> want;
  for (const auto& w : writers_) {
    if (!w->alive) continue;
    for (const auto& [name, value] : w->desired) want[JoinPath(w->prefix, name)] = value;
  }
  std::map<std::string, std::string> have;
  for (const auto& [key, value] : current_) {
    if (key.starts_with(std::string(kRoot) + "/")) have[key] = value;
  }
  auto diff = [](const std::map<std::string, std::string>& a,
                 const std::map<std::string, std::string>& b, const std::string& where) {
    for (const auto& [key, value] : a) {
      auto it = b.find(key);
      if (it == b.end()) return absl::StrCat(where, ": ", key, " missing (want ", value, ")");
      if (it->second != value) {
        return absl::StrCat(where, ": ", key, " holds ", it->second, ", want ", value);
      }
    }
    for (const auto& [key, value] : b) {
      if (!a.contains(key)) return absl::StrCat(where, ": ", key, "=", value, " should be gone");
    }
    return std::string();
  };
  if (std::string d = diff(want, have, "store"); !d.empty()) return d;
  for (const auto& w : writers_) {
    if (w->alive && w->synced_called && !current_.contains(w->canary)) {
      return absl::StrCat("store: canary ", w->canary, " missing");
    }
  }
  for (const auto& r : readers_) {
    if (!r->alive) continue;
    std::map<std::string, std::string> cache;
    for (const auto& [name, value] : r->observer->cache) cache[JoinPath(kRoot, name)] = value;
    if (std::string d = diff(want, cache, absl::StrCat("reader ", r->id)); !d.empty()) return d;
    if (!r->store->Synced()) return absl::StrCat("reader ", r->id, ": not synced");
    if (r->store->NumEntries() != cache.size()) {
      return absl::StrCat("reader ", r->id, ": NumEntries ", r->store->NumEntries(),
                          " but the observer saw ", cache.size());
    }
  }
  return std::string();
}

void Simulation::ExpireSession(Writer& w) {
  Count("session_expiry");
  Trace(absl::StrCat("fault session_expiry ", w.name));
  store_->ExpireSession(*w.client);
  Snapshot();  // the deletes, before anything can write the keys again
}

void Simulation::Storm() {
  Trace("storm");
  for (auto& w : writers_) {
    if (!w->alive) continue;
    for (int64_t n = rng_.Uniform(0, 4); n > 0; --n) WriterOp(*w);
  }
  if (opts_.p_writer_crash > 0 && rng_.Chance(0.5)) {
    Writer& w = writer(static_cast<int>(rng_.Uniform(0, opts_.writers - 1)));
    if (w.alive) {
      Count("writer_crash");
      CrashWriter(w);
    }
  }
  if (opts_.p_session_expiry > 0 && rng_.Chance(0.5)) {
    Writer& w = writer(static_cast<int>(rng_.Uniform(0, opts_.writers - 1)));
    if (w.alive) {
      ExpireSession(w);
    }
  }
  if (opts_.p_compact > 0 && rng_.Chance(0.5)) {
    Count("compact");
    store_->Compact(0);
  }
  // Some of it runs while the faults are still on.
  for (int64_t n = rng_.Uniform(0, 20); n > 0 && !failed(); --n) RunOneTask(false);
  Snapshot();
}

void Simulation::Heal() {
  faults_on_ = false;
  Trace("heal");
  for (auto& r : readers_) r->slow_until = 0;
  const Clock::time_point healed = clock_->Now();
  // Backoff of a key that kept failing (the default controller's cap, 1000 s) plus a lease TTL
  // plus slack: everything must agree within that.
  const Clock::duration bound = seconds(1000) + opts_.lease_ttl + seconds(60);
  while (!failed()) {
    for (auto& r : readers_) {
      if (r->alive && r->restart_watch && !*r->running) StartWatch(*r);
    }
    while (!failed() && RunOneTask(true)) {
      for (auto& r : readers_) {
        if (r->alive && r->restart_watch && !*r->running) StartWatch(*r);
      }
    }
    if (failed()) return;
    std::string divergence = Divergence();
    if (divergence.empty()) break;
    if (clock_->Now() - healed > bound) {
      Violation(absl::StrCat("no convergence within ",
                             std::chrono::duration_cast<seconds>(bound).count(),
                             "s after the faults healed: ", divergence));
      return;
    }
    if (!AdvanceToNextTimer()) {
      Violation(absl::StrCat("no convergence, and nothing left to run (no task, no timer): ",
                             divergence, "; ", WaitSites()));
      return;
    }
  }
  result_.convergence_seconds = std::max(
      result_.convergence_seconds, std::chrono::duration<double>(clock_->Now() - healed).count());
  result_.convergence_total_seconds +=
      std::chrono::duration<double>(clock_->Now() - healed).count();
  ++result_.heals;
}

std::string Simulation::WaitSites() const {
  std::string out;
  for (const auto& w : writers_) {
    absl::StrAppend(&out, "writer ", w->name, ": ", w->alive ? "alive" : "dead",
                    *w->running ? ", SyncStore running" : ", SyncStore returned",
                    w->synced_called ? ", synced called" : "", ", ", w->executor->Pending(),
                    " tasks queued; ");
  }
  for (const auto& r : readers_) {
    absl::StrAppend(&out, "reader ", r->id, ": ", r->alive ? "alive" : "dead",
                    *r->running ? ", Watch running" : ", Watch returned",
                    r->store && r->store->Synced() ? ", synced" : ", not synced", ", ",
                    r->executor->Pending(), " tasks queued; ");
  }
  absl::StrAppend(&out, "server: ", server_executor_->Pending(), " tasks queued; ",
                  clock_->NumTimers(), " timers");
  return out;
}

void Simulation::Shutdown() {
  for (auto& w : writers_) {
    if (*w->running) w->cancel();
  }
  for (auto& r : readers_) {
    if (*r->running) r->cancel();
  }
  // Every task must return once its context is done.
  for (int rounds = 0; rounds < 1000; ++rounds) {
    while (RunOneTask(true)) {
    }
    if (!AdvanceToNextTimer()) break;
  }
  if (failed()) return;  // a run cut short by a violation may leave tasks waiting
  for (auto& w : writers_) {
    if (*w->running) {
      Violation(absl::StrCat(
          "deadlock: writer ", w->name, "'s SyncStore task still waits after its context ended (",
          w->executor->Pending(), " tasks queued, ", clock_->NumTimers(), " timers)"));
    }
  }
  for (auto& r : readers_) {
    if (*r->running) {
      Violation(absl::StrCat(
          "deadlock: reader ", r->id, "'s WatchStore task still waits after its context ended (",
          r->executor->Pending(), " tasks queued, ", clock_->NumTimers(), " timers)"));
    }
  }
}

SimResult Simulation::Run() {
  opts_ = PickOptions(rng_, config_.length);
  result_.options = opts_.ToString();
  memory::InMemoryOptions mo;
  mo.clock = clock_;
  mo.executor = server_executor_;
  mo.lease_ttl = opts_.lease_ttl;
  mo.max_keys_per_lease = opts_.max_keys_per_lease;
  mo.max_history_revisions = opts_.max_history_revisions;
  store_ = memory::InMemoryStore::Create(mo);
  truth_client_ = store_->NewClient("truth");
  for (int i = 0; i < opts_.writers; ++i) {
    auto w = std::make_unique<Writer>();
    w->id = i;
    w->name = absl::StrCat("o", i);
    w->prefix = JoinPath(kRoot, w->name);
    w->canary = SyncedKeyPath(kCluster, w->prefix);
    executors_.push_back(w->executor);
    writers_.push_back(std::move(w));
  }
  for (int i = 0; i < opts_.readers; ++i) {
    auto r = std::make_unique<Reader>();
    r->id = i;
    executors_.push_back(r->executor);
    readers_.push_back(std::move(r));
  }
  for (auto& r : readers_) StartReader(*r);
  for (auto& w : writers_) StartWriter(*w);

  for (step_ = 0; step_ < static_cast<uint64_t>(opts_.steps) && !failed(); ++step_) {
    Faults();
    for (auto& w : writers_) {
      if (w->alive && rng_.Chance(opts_.p_op)) WriterOp(*w);
    }
    for (auto& r : readers_) {
      if (r->alive && r->restart_watch && !*r->running) StartWatch(*r);
    }
    Snapshot();
    if (rng_.Chance(1.0 / 1000)) {
      // A heal point in the middle of the run: everything must converge, then faults resume.
      Storm();
      Heal();
      faults_on_ = true;
      continue;
    }
    if (!RunOneTask(false)) {
      if (!AdvanceToNextTimer()) clock_->Advance(milliseconds(rng_.Uniform(1, 1000)));
    } else if (rng_.Chance(0.02)) {
      clock_->Advance(milliseconds(rng_.Uniform(1, 200)));  // time passes while work is queued
    }
  }
  if (!failed()) {
    // The faults stop in the middle of things: a last burst of changes and faults, then heal.
    Storm();
    Heal();
  }
  // Also after a violation: every task is asked to return before anything is destroyed.
  Shutdown();
  result_.steps = step_;
  result_.simulated_seconds = SimSeconds();
  // Everything is torn down before the executors, so that no task outlives what it uses.
  for (auto& r : readers_) r->store.reset();
  for (auto& w : writers_) w->store.reset();
  return result_;
}

}  // namespace

SimResult RunSeed(uint64_t seed, const SimConfig& config) {
  Simulation sim(seed, config);
  return sim.Run();
}

}  // namespace kvstore::sim

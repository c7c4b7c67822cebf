#include "tests/support/store_checks.h"

#include <dirent.h>

#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "kvstore/workqueue/rate_limiter.h"
#include "tests/support/eventually.h"

namespace kvstore::testing {

void MirrorObserver::OnUpdate(const store::Key& key) {
  absl::StatusOr<std::string> value = key.Marshal();
  std::unique_lock<std::mutex> lock(mu_);
  released_.wait(lock, [this] { return !held_; });
  ++updates_;
  view_[key.GetKeyName()] = value.ok() ? *value : "<marshal failed>";
}

void MirrorObserver::OnDelete(const store::NamedKey& key) {
  std::string name = key.GetKeyName();
  std::unique_lock<std::mutex> lock(mu_);
  released_.wait(lock, [this] { return !held_; });
  ++deletes_;
  ++deletes_by_name_[name];
  if (first_delete_ == std::chrono::steady_clock::time_point{}) {
    first_delete_ = std::chrono::steady_clock::now();
  }
  if (view_.erase(name) == 0 && !(allow_repeated_delete_ && allow_repeated_delete_(name))) {
    ++spurious_;
    if (spurious_names_.size() < 5) spurious_names_.push_back(name);
  }
}

void MirrorObserver::Hold() {
  std::lock_guard<std::mutex> guard(mu_);
  held_ = true;
}

void MirrorObserver::Release() {
  std::lock_guard<std::mutex> guard(mu_);
  held_ = false;
  released_.notify_all();
}

KeyMap MirrorObserver::View() const {
  std::lock_guard<std::mutex> guard(mu_);
  return view_;
}

size_t MirrorObserver::Size() const {
  std::lock_guard<std::mutex> guard(mu_);
  return view_.size();
}

uint64_t MirrorObserver::Updates() const {
  std::lock_guard<std::mutex> guard(mu_);
  return updates_;
}

uint64_t MirrorObserver::Deletes() const {
  std::lock_guard<std::mutex> guard(mu_);
  return deletes_;
}

uint64_t MirrorObserver::DeletesOf(const std::string& name) const {
  std::lock_guard<std::mutex> guard(mu_);
  auto it = deletes_by_name_.find(name);
  return it == deletes_by_name_.end() ? 0 : it->second;
}

uint64_t MirrorObserver::SpuriousDeletes() const {
  std::lock_guard<std::mutex> guard(mu_);
  return spurious_;
}

std::vector<std::string> MirrorObserver::SpuriousDeleteNames() const {
  std::lock_guard<std::mutex> guard(mu_);
  return spurious_names_;
}

std::chrono::steady_clock::time_point MirrorObserver::FirstDeleteTime() const {
  std::lock_guard<std::mutex> guard(mu_);
  return first_delete_;
}

namespace {

std::string WithSlash(const std::string& prefix) {
  return prefix.ends_with("/") ? prefix : prefix + "/";
}

absl::StatusOr<KeyValuePairs> List(const etcd::EtcdConfig& config, const std::string& prefix) {
  absl::StatusOr<std::shared_ptr<Backend>> backend = etcd::NewEtcdBackend(config);
  if (!backend.ok()) return backend.status();
  absl::StatusOr<KeyValuePairs> pairs = (*backend)->ListPrefix(Context(), WithSlash(prefix));
  (*backend)->Close();
  return pairs;
}

}  // namespace

absl::StatusOr<KeyMap> ReadPrefix(const etcd::EtcdConfig& config, const std::string& prefix) {
  absl::StatusOr<KeyValuePairs> pairs = List(config, prefix);
  if (!pairs.ok()) return pairs.status();
  const size_t skip = WithSlash(prefix).size();
  KeyMap keys;
  for (const auto& [key, value] : *pairs) keys[key.substr(skip)] = value.data;
  return keys;
}

absl::StatusOr<std::map<std::string, int64_t>> ReadLeases(const etcd::EtcdConfig& config,
                                                          const std::string& prefix) {
  absl::StatusOr<KeyValuePairs> pairs = List(config, prefix);
  if (!pairs.ok()) return pairs.status();
  const size_t skip = WithSlash(prefix).size();
  std::map<std::string, int64_t> leases;
  for (const auto& [key, value] : *pairs) leases[key.substr(skip)] = value.lease_id;
  return leases;
}

KeyMap SharedView(const store::SharedStore& store) {
  KeyMap keys;
  for (const auto& [name, key] : store.SharedKeysMap()) {
    absl::StatusOr<std::string> value = key->Marshal();
    keys[name] = value.ok() ? *value : "<marshal failed>";
  }
  return keys;
}

std::string DescribeDifference(const KeyMap& want, const KeyMap& got) {
  std::vector<std::string> missing, stale, extra;
  size_t n_missing = 0, n_stale = 0, n_extra = 0;
  for (const auto& [name, value] : want) {
    auto it = got.find(name);
    if (it == got.end()) {
      if (++n_missing <= 3) missing.push_back(name);
    } else if (it->second != value) {
      if (++n_stale <= 3) stale.push_back(absl::StrCat(name, "=", it->second, " want ", value));
    }
  }
  for (const auto& entry : got) {
    if (!want.count(entry.first) && ++n_extra <= 3) extra.push_back(entry.first);
  }
  if (n_missing + n_stale + n_extra == 0) return "";
  return absl::StrCat(want.size(), " wanted, ", got.size(), " present: ", n_missing, " missing [",
                      absl::StrJoin(missing, ", "), "], ", n_stale, " stale [",
                      absl::StrJoin(stale, ", "), "], ", n_extra, " extra [",
                      absl::StrJoin(extra, ", "), "]");
}

std::string CompareEtcd(const etcd::EtcdConfig& config, const std::string& prefix,
                        const KeyMap& want) {
  absl::StatusOr<KeyMap> got = ReadPrefix(config, prefix);
  if (!got.ok()) return "etcd read: " + got.status().ToString();
  std::string diff = DescribeDifference(want, *got);
  return diff.empty() ? "" : "etcd " + prefix + ": " + diff;
}

std::string CompareConvergence(const etcd::EtcdConfig& config, const std::string& sync_prefix,
                               const KeyMap& sync_want,
                               const std::vector<const WatchingStore*>& watchers,
                               const std::string& shared_prefix, const KeyMap& shared_want,
                               const std::vector<Collaborator*>& collaborators) {
  if (std::string d = CompareEtcd(config, sync_prefix, sync_want); !d.empty()) return d;
  for (const WatchingStore* w : watchers) {
    if (std::string d = w->Compare(sync_want); !d.empty()) return d;
  }
  if (std::string d = CompareEtcd(config, shared_prefix, shared_want); !d.empty()) return d;
  for (const Collaborator* c : collaborators) {
    if (std::string d = c->Compare(shared_want); !d.empty()) return d;
  }
  return "";
}

std::string PollUntil(const std::function<std::string()>& check,
                      std::chrono::milliseconds timeout) {
  std::string reason;
  Eventually(
      [&] {
        reason = check();
        return reason.empty();
      },
      timeout);
  return reason;
}

WatchingStore::WatchingStore(std::shared_ptr<Backend> backend, std::string prefix)
    : backend_(std::move(backend)),
      observer_(std::make_shared<MirrorObserver>()),
      store_(store::NewRestartableWatchStore("reliability", store::KVPairCreator, observer_)) {
  std::tie(ctx_, cancel_) = WithCancel(Context::Background());
  thread_ = std::thread([this, prefix = std::move(prefix)] {
    while (!ctx_.Done()) {
      store_->Watch(ctx_, *backend_, prefix);
      if (ctx_.Done()) break;
      {
        std::lock_guard<std::mutex> guard(mu_);
        ++watch_returns_;
      }
      ctx_.WaitFor(std::chrono::milliseconds(100));
    }
  });
}

WatchingStore::~WatchingStore() {
  observer_->Release();  // a held observer would block the Watch being stopped
  cancel_();
  thread_.join();
}

int WatchingStore::WatchReturns() const {
  std::lock_guard<std::mutex> guard(mu_);
  return watch_returns_;
}

std::string WatchingStore::Compare(const KeyMap& want) const {
  std::string diff = DescribeDifference(want, observer_->View());
  if (!diff.empty()) return "watch store mirror: " + diff;
  if (store_->NumEntries() != want.size()) {
    return absl::StrCat("watch store NumEntries ", store_->NumEntries(), " want ", want.size());
  }
  return "";
}

RunningSyncStore::RunningSyncStore(std::shared_ptr<Backend> backend, std::string prefix,
                                   unsigned workers) {
  store::WorkqueueSyncStoreOptions options;
  options.workers = workers;
  options.rate_limiter =
      std::make_shared<workqueue::ItemExponentialFailureRateLimiter<std::string>>(
          std::chrono::milliseconds(5), std::chrono::milliseconds(500));
  store_ = store::NewWorkqueueSyncStore("reliability", std::move(backend), std::move(prefix),
                                        std::move(options));
  std::tie(ctx_, cancel_) = WithCancel(Context::Background());
  thread_ = std::thread([this] { store_->Run(ctx_); });
}

RunningSyncStore::~RunningSyncStore() {
  cancel_();
  thread_.join();
}

absl::Status RunningSyncStore::Upsert(const std::string& name, const std::string& value) {
  return store_->UpsertKey(ctx_, store::KVPair(name, value));
}

absl::Status RunningSyncStore::Delete(const std::string& name) {
  return store_->DeleteKey(ctx_, store::KVPair(name, ""));
}

absl::Status RunningSyncStore::UpsertRange(int from, int to, const std::string& value_prefix,
                                           KeyMap& want) {
  for (int i = from; i < to; ++i) {
    std::string value = absl::StrCat(value_prefix, i);
    if (absl::Status status = Upsert(KeyName(i), value); !status.ok()) return status;
    want[KeyName(i)] = value;
  }
  return absl::OkStatus();
}

std::string RunningSyncStore::KeyName(int i) { return absl::StrFormat("k%06d", i); }

absl::StatusOr<std::unique_ptr<Collaborator>> Collaborator::Join(
    std::shared_ptr<Backend> backend, std::string prefix, std::string own_names,
    std::chrono::milliseconds synchronization_interval) {
  std::unique_ptr<Collaborator> c(new Collaborator());
  c->backend_ = backend;
  c->observer_ = std::make_shared<MirrorObserver>([own_names](const std::string& name) {
    return !own_names.empty() && name.starts_with(own_names);
  });
  store::Configuration config;
  config.prefix = std::move(prefix);
  config.synchronization_interval = synchronization_interval;
  config.key_creator = store::KVPairCreator;
  config.backend = std::move(backend);
  config.observer = c->observer_;
  absl::StatusOr<std::unique_ptr<store::SharedStore>> store =
      store::SharedStore::Join(std::move(config));
  if (!store.ok()) return store.status();
  c->store_ = std::move(*store);
  return c;
}

Collaborator::~Collaborator() {
  if (store_) store_->Release();
}

absl::Status Collaborator::Publish(const std::string& name, const std::string& value,
                                   std::chrono::milliseconds timeout) {
  absl::Status status;
  Eventually(
      [&] {
        status = store_->UpdateLocalKeySync(Context(), store::KVPair(name, value));
        if (!status.ok()) ++failed_publishes_;
        return status.ok();
      },
      timeout);
  return status;
}

std::future<absl::Status> Collaborator::PublishRange(const std::string& owner, int from, int to,
                                                     const std::string& value, KeyMap& want) {
  for (int i = from; i < to; ++i) want[absl::StrCat(owner, "/", i)] = value;
  return std::async(std::launch::async, [this, owner, from, to, value] {
    for (int i = from; i < to; ++i) {
      if (absl::Status status = Publish(absl::StrCat(owner, "/", i), value); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  });
}

std::string Collaborator::Compare(const KeyMap& want) const {
  std::string diff = DescribeDifference(want, SharedView(*store_));
  if (!diff.empty()) return "shared store cache: " + diff;
  diff = DescribeDifference(want, observer_->View());
  if (!diff.empty()) return "shared store observer: " + diff;
  return "";
}

int64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) {
      std::istringstream fields(line.substr(6));
      int64_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return -1;
}

int ThreadCount() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

}  // namespace kvstore::testing

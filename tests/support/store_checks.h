// Checks for the reliability tests against a real etcd: an observer that mirrors what a store
// reports (and catches deletes of keys it does not hold), reading a prefix with a fresh client,
// comparing views, and process figures (RSS, threads) for the load tests.
#ifndef KVSTORE_TESTS_SUPPORT_STORE_CHECKS_H_
#define KVSTORE_TESTS_SUPPORT_STORE_CHECKS_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/context.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"

namespace kvstore::testing {

using KeyMap = std::map<std::string, std::string>;  // name relative to a prefix -> value

// Mirrors the keys a store reports through Observer calls (names as the store gives them).
// A delete of a name the mirror does not hold is counted as a spurious delete: a store must not
// report a key gone twice, nor report the delete of a key it never announced. Names for which
// `allow_repeated_delete` returns true are exempt (a SharedStore reports its own DeleteLocalKey
// twice by contract). Thread-safe.
class MirrorObserver : public store::Observer {
 public:
  explicit MirrorObserver(std::function<bool(const std::string&)> allow_repeated_delete = nullptr)
      : allow_repeated_delete_(std::move(allow_repeated_delete)) {}

  void OnUpdate(const store::Key& key) override;
  void OnDelete(const store::NamedKey& key) override;

  KeyMap View() const;
  size_t Size() const;
  uint64_t Updates() const;
  uint64_t Deletes() const;
  uint64_t DeletesOf(const std::string& name) const;
  // Deletes of names the mirror did not hold, with the first few such names.
  uint64_t SpuriousDeletes() const;
  std::vector<std::string> SpuriousDeleteNames() const;
  // Steady-clock time of the first OnDelete (time_point{} when none yet).
  std::chrono::steady_clock::time_point FirstDeleteTime() const;
  // While held, observer calls block: the store becomes a slow consumer.
  void Hold();
  void Release();

 private:
  const std::function<bool(const std::string&)> allow_repeated_delete_;
  mutable std::mutex mu_;  // guards everything below
  KeyMap view_;
  std::map<std::string, uint64_t> deletes_by_name_;
  uint64_t updates_ = 0, deletes_ = 0, spurious_ = 0;
  std::vector<std::string> spurious_names_;
  std::chrono::steady_clock::time_point first_delete_{};
  bool held_ = false;
  std::condition_variable released_;
};

// The keys under `prefix` (with a trailing "/" added when missing), names relative to it, read
// with a new backend client made from `config` (closed afterwards).
absl::StatusOr<KeyMap> ReadPrefix(const etcd::EtcdConfig& config, const std::string& prefix);

// The same, with their lease ids.
absl::StatusOr<std::map<std::string, int64_t>> ReadLeases(const etcd::EtcdConfig& config,
                                                          const std::string& prefix);

// A SharedStore's cache as name -> value (every key must be a store::KVPair).
KeyMap SharedView(const store::SharedStore& store);

// Empty when equal; otherwise a short description: counts of missing, stale and extra keys with
// a few examples of each.
std::string DescribeDifference(const KeyMap& want, const KeyMap& got);

// Polls `check` (returning "" once satisfied, else why not) until it is satisfied or `timeout`
// passed; returns the last reason ("" on success).
std::string PollUntil(const std::function<std::string()>& check, std::chrono::milliseconds timeout);

// A RestartableWatchStore of KVPairs watching `prefix` on its own thread, as an agent runs one:
// Watch is called again should it ever return before the end. Stopped and joined on destruction.
class WatchingStore {
 public:
  WatchingStore(std::shared_ptr<Backend> backend, std::string prefix);
  WatchingStore(const WatchingStore&) = delete;
  WatchingStore& operator=(const WatchingStore&) = delete;
  ~WatchingStore();

  const MirrorObserver& observer() const { return *observer_; }
  MirrorObserver& observer() { return *observer_; }
  const store::WatchStore& store() const { return *store_; }
  // Times Watch returned before the end (a backend should re-list transparently instead).
  int WatchReturns() const;
  // Empty when the mirror and NumEntries equal `want`, else why not.
  std::string Compare(const KeyMap& want) const;

 private:
  std::shared_ptr<Backend> backend_;
  std::shared_ptr<MirrorObserver> observer_;
  std::unique_ptr<store::WatchStore> store_;
  Context ctx_;
  CancelFunc cancel_;
  mutable std::mutex mu_;  // guards watch_returns_
  int watch_returns_ = 0;
  std::thread thread_;
};

// A WorkqueueSyncStore running on its own thread until destruction. Retries back off
// exponentially from 5 ms up to 500 ms per key, without the default limiter's 10 qps bucket:
// after an outage the default would re-write thousands of failed keys at 10 a second.
class RunningSyncStore {
 public:
  RunningSyncStore(std::shared_ptr<Backend> backend, std::string prefix, unsigned workers = 4);
  RunningSyncStore(const RunningSyncStore&) = delete;
  RunningSyncStore& operator=(const RunningSyncStore&) = delete;
  ~RunningSyncStore();

  store::SyncStore& store() { return *store_; }
  // Upserts a KVPair; the status of UpsertKey.
  absl::Status Upsert(const std::string& name, const std::string& value);
  absl::Status Delete(const std::string& name);
  // Upserts KeyName(i) = value_prefix + i for i in [from, to), recording them in `want`.
  absl::Status UpsertRange(int from, int to, const std::string& value_prefix, KeyMap& want);

  // "k000042": the key names UpsertRange uses.
  static std::string KeyName(int i);

 private:
  std::unique_ptr<store::SyncStore> store_;
  Context ctx_;
  CancelFunc cancel_;
  std::thread thread_;
};

// One SharedStore collaborator of KVPairs with its own backend client and a mirroring observer.
class Collaborator {
 public:
  // Joins `prefix` through `backend`. Deletes of names starting with `own_names` may repeat
  // (DeleteLocalKey reports a local key twice by contract).
  static absl::StatusOr<std::unique_ptr<Collaborator>> Join(
      std::shared_ptr<Backend> backend, std::string prefix, std::string own_names = "",
      std::chrono::milliseconds synchronization_interval = std::chrono::milliseconds(0));
  Collaborator(const Collaborator&) = delete;
  Collaborator& operator=(const Collaborator&) = delete;
  ~Collaborator();  // Release()s the store (nothing left to do after Close)

  store::SharedStore& store() { return *store_; }
  const MirrorObserver& observer() const { return *observer_; }
  Backend& backend() { return *backend_; }
  // UpdateLocalKeySync, retried until it succeeds or `timeout` passed; counts failed attempts.
  absl::Status Publish(const std::string& name, const std::string& value,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Publishes "<owner>/<i>" = `value` for i in [from, to) on another thread, and records them in
  // `want` at once. The future holds the first failure (or OK).
  std::future<absl::Status> PublishRange(const std::string& owner, int from, int to,
                                         const std::string& value, KeyMap& want);
  uint64_t FailedPublishes() const { return failed_publishes_; }
  // Empty when both the store's cache and the observer's mirror equal `want`, else why not.
  std::string Compare(const KeyMap& want) const;

 private:
  Collaborator() = default;
  std::shared_ptr<Backend> backend_;
  std::shared_ptr<MirrorObserver> observer_;
  std::unique_ptr<store::SharedStore> store_;
  std::atomic<uint64_t> failed_publishes_{0};
};

// Empty when etcd holds exactly `want` under `prefix` (read with ReadPrefix), else
// "etcd PREFIX: " and the difference.
std::string CompareEtcd(const etcd::EtcdConfig& config, const std::string& prefix,
                        const KeyMap& want);

// Empty once etcd under `sync_prefix` and every watching store hold `sync_want`, and etcd under
// `shared_prefix` and every collaborator hold `shared_want`; otherwise the first difference.
std::string CompareConvergence(const etcd::EtcdConfig& config, const std::string& sync_prefix,
                               const KeyMap& sync_want,
                               const std::vector<const WatchingStore*>& watchers,
                               const std::string& shared_prefix, const KeyMap& shared_want,
                               const std::vector<Collaborator*>& collaborators);

// Resident memory (VmRSS) of this process in bytes, and its number of threads.
int64_t ResidentBytes();
int ThreadCount();

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_STORE_CHECKS_H_

// A SyncStoreBackend that records every call, can fail or block calls on a key, and fires
// lease-expired observers on demand.
#ifndef KVSTORE_TESTS_SUPPORT_FAKE_SYNC_STORE_BACKEND_H_
#define KVSTORE_TESTS_SUPPORT_FAKE_SYNC_STORE_BACKEND_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvstore/backend.h"
#include "tests/support/eventually.h"

namespace kvstore::testing {

class FakeSyncStoreBackend : public SyncStoreBackend {
 public:
  struct Call {
    enum class Kind { kUpdate, kDelete };
    Kind kind = Kind::kUpdate;
    std::string key;
    std::string value;   // empty for kDelete
    bool lease = false;  // false for kDelete
    bool operator==(const Call&) const = default;
  };
  static Call UpdateCall(std::string key, std::string value, bool lease = true) {
    return Call{Call::Kind::kUpdate, std::move(key), std::move(value), lease};
  }
  static Call DeleteCall(std::string key) {
    return Call{Call::Kind::kDelete, std::move(key), "", false};
  }

  FakeSyncStoreBackend() = default;
  FakeSyncStoreBackend(const FakeSyncStoreBackend&) = delete;
  FakeSyncStoreBackend& operator=(const FakeSyncStoreBackend&) = delete;

  // Recorded on entry (before blocking or failing). A failed call returns Unavailable; a call
  // blocked by Block(key) waits for Release(key), or returns Cancelled once `ctx` is done.
  absl::Status Update(const Context& ctx, std::string_view key, std::string_view value,
                      bool lease) override;
  absl::Status Delete(const Context& ctx, std::string_view key) override;
  void RegisterLeaseExpiredObserver(std::string_view prefix,
                                    std::function<void(std::string_view key)> fn) override;

  // The next `times` calls (Update or Delete) on `key` fail.
  void FailNext(const std::string& key, int times);
  // Calls on `key` block (after being recorded) until Release(key).
  void Block(const std::string& key);
  void Release(const std::string& key);
  // Number of calls currently blocked.
  size_t NumBlocked() const;

  std::vector<Call> Calls() const;
  size_t NumCalls() const;
  // Waits until at least `n` calls were recorded.
  bool WaitForCalls(size_t n, std::chrono::steady_clock::duration timeout = kEventuallyTimeout);

  // Prefixes with an observer registered.
  std::set<std::string> ObserverPrefixes() const;
  // Calls, like a backend whose lease ended, every observer whose prefix `key` starts with.
  void ExpireLease(std::string_view key);

 private:
  absl::Status Record(const Context& ctx, Call call);

  mutable std::mutex mu_;  // guards every field below
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::map<std::string, int> failures_;  // by key: calls still to fail
  std::set<std::string> blocked_keys_;
  size_t num_blocked_ = 0;
  std::map<std::string, std::function<void(std::string_view)>> observers_;  // by prefix
};

// For readable test failures.
std::ostream& operator<<(std::ostream& os, const FakeSyncStoreBackend::Call& call);

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_FAKE_SYNC_STORE_BACKEND_H_

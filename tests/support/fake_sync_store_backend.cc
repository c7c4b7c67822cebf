#include "tests/support/fake_sync_store_backend.h"

#include <utility>

namespace kvstore::testing {

absl::Status FakeSyncStoreBackend::Update(const Context& ctx, std::string_view key,
                                          std::string_view value, bool lease) {
  return Record(ctx, Call{Call::Kind::kUpdate, std::string(key), std::string(value), lease});
}

absl::Status FakeSyncStoreBackend::Delete(const Context& ctx, std::string_view key) {
  return Record(ctx, Call{Call::Kind::kDelete, std::string(key), "", false});
}

absl::Status FakeSyncStoreBackend::Record(const Context& ctx, Call call) {
  std::unique_lock<std::mutex> lock(mu_);
  std::string key = call.key;
  calls_.push_back(std::move(call));
  cv_.notify_all();
  if (blocked_keys_.contains(key)) {
    ++num_blocked_;
    bool released = ctx.WaitOn(lock, cv_, [&] { return !blocked_keys_.contains(key); });
    --num_blocked_;
    if (!released) return ctx.Err();
  }
  auto failure = failures_.find(key);
  if (failure != failures_.end() && failure->second > 0) {
    --failure->second;
    return absl::UnavailableError("failing on purpose: " + key);
  }
  return absl::OkStatus();
}

void FakeSyncStoreBackend::RegisterLeaseExpiredObserver(
    std::string_view prefix, std::function<void(std::string_view key)> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fn) {
    observers_[std::string(prefix)] = std::move(fn);
  } else {
    observers_.erase(std::string(prefix));
  }
}

void FakeSyncStoreBackend::FailNext(const std::string& key, int times) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_[key] = times;
}

void FakeSyncStoreBackend::Block(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  blocked_keys_.insert(key);
}

void FakeSyncStoreBackend::Release(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  blocked_keys_.erase(key);
  cv_.notify_all();
}

size_t FakeSyncStoreBackend::NumBlocked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_blocked_;
}

std::vector<FakeSyncStoreBackend::Call> FakeSyncStoreBackend::Calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

size_t FakeSyncStoreBackend::NumCalls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_.size();
}

bool FakeSyncStoreBackend::WaitForCalls(size_t n, std::chrono::steady_clock::duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return calls_.size() >= n; });
}

std::set<std::string> FakeSyncStoreBackend::ObserverPrefixes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string> prefixes;
  for (const auto& [prefix, fn] : observers_) prefixes.insert(prefix);
  return prefixes;
}

void FakeSyncStoreBackend::ExpireLease(std::string_view key) {
  std::vector<std::function<void(std::string_view)>> matching;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [prefix, fn] : observers_) {
      if (key.starts_with(prefix)) matching.push_back(fn);
    }
  }
  for (const auto& fn : matching) fn(key);
}

std::ostream& operator<<(std::ostream& os, const FakeSyncStoreBackend::Call& call) {
  if (call.kind == FakeSyncStoreBackend::Call::Kind::kDelete)
    return os << "Delete(" << call.key << ")";
  return os << "Update(" << call.key << ", " << call.value << ", lease=" << call.lease << ")";
}

}  // namespace kvstore::testing

#include "tests/support/recording_rate_limiter.h"

namespace kvstore::testing {

std::chrono::nanoseconds RecordingRateLimiter::When(const std::string& item) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.push_back(WhenCall(item));
  ++requeues_[item];
  cv_.notify_all();
  return delay_;
}

void RecordingRateLimiter::Forget(const std::string& item) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.push_back(ForgetCall(item));
  requeues_.erase(item);
  cv_.notify_all();
}

int RecordingRateLimiter::NumRequeues(const std::string& item) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = requeues_.find(item);
  return it == requeues_.end() ? 0 : it->second;
}

std::vector<RecordingRateLimiter::Call> RecordingRateLimiter::Calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

bool RecordingRateLimiter::WaitForCalls(size_t n, std::chrono::steady_clock::duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return calls_.size() >= n; });
}

std::ostream& operator<<(std::ostream& os, const RecordingRateLimiter::Call& call) {
  return os << (call.kind == RecordingRateLimiter::Call::Kind::kWhen ? "When(" : "Forget(")
            << call.item << ")";
}

}  // namespace kvstore::testing

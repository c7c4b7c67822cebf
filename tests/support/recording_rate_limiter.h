// A RateLimiter<std::string> that records When/Forget calls and always answers one fixed delay.
#ifndef KVSTORE_TESTS_SUPPORT_RECORDING_RATE_LIMITER_H_
#define KVSTORE_TESTS_SUPPORT_RECORDING_RATE_LIMITER_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "kvstore/workqueue/rate_limiter.h"
#include "tests/support/eventually.h"

namespace kvstore::testing {

class RecordingRateLimiter : public workqueue::RateLimiter<std::string> {
 public:
  struct Call {
    enum class Kind { kWhen, kForget };
    Kind kind = Kind::kWhen;
    std::string item;
    bool operator==(const Call&) const = default;
  };
  static Call WhenCall(std::string item) { return Call{Call::Kind::kWhen, std::move(item)}; }
  static Call ForgetCall(std::string item) { return Call{Call::Kind::kForget, std::move(item)}; }

  explicit RecordingRateLimiter(std::chrono::nanoseconds delay = std::chrono::nanoseconds::zero())
      : delay_(delay) {}

  std::chrono::nanoseconds When(const std::string& item) override;
  void Forget(const std::string& item) override;
  int NumRequeues(const std::string& item) override;

  std::vector<Call> Calls() const;
  bool WaitForCalls(size_t n, std::chrono::steady_clock::duration timeout = kEventuallyTimeout);

 private:
  const std::chrono::nanoseconds delay_;
  mutable std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::map<std::string, int> requeues_;
};

std::ostream& operator<<(std::ostream& os, const RecordingRateLimiter::Call& call);

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_RECORDING_RATE_LIMITER_H_

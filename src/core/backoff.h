// How long to wait before retrying: the one backoff of the library (and of kvstorectl), doubling
// from a base up to a cap.
#ifndef KVSTORE_CORE_BACKOFF_H_
#define KVSTORE_CORE_BACKOFF_H_

#include <algorithm>
#include <chrono>

namespace kvstore::internal {

// Delay before retry number `attempt` (0-based): `base` doubled `attempt` times, at most `max`.
inline std::chrono::milliseconds BackoffDelay(int attempt, std::chrono::milliseconds base,
                                              std::chrono::milliseconds max) {
  std::chrono::milliseconds d = base;
  for (int i = 0; i < attempt && d < max; ++i) d *= 2;
  return std::min(d, max);
}

// The delays of one sequence of retries. Thread-compatible.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds max) : base_(base), max_(max) {}

  // The wait before the next attempt; each call doubles the next one.
  std::chrono::milliseconds Next() {
    std::chrono::milliseconds wait = BackoffDelay(attempts_, base_, max_);
    if (attempts_ < 64) ++attempts_;
    return wait;
  }
  // After a success: the next wait is `base` again.
  void Reset() { attempts_ = 0; }
  // Failures since the last Reset.
  int attempts() const { return attempts_; }

 private:
  const std::chrono::milliseconds base_;
  const std::chrono::milliseconds max_;
  int attempts_ = 0;
};

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_BACKOFF_H_

// How long to wait before retrying: the one backoff of the library (and of kvstorectl). The wait
// before retry number n is drawn uniformly between zero and a ceiling that doubles from a base up
// to a cap ("full jitter"): clients that failed together (an etcd restart under hundreds of
// agents) spread their retries over the whole interval instead of coming back in waves, and none
// retries more than once per step.
#ifndef KVSTORE_CORE_BACKOFF_H_
#define KVSTORE_CORE_BACKOFF_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace kvstore::internal {

// The ceiling of retry number `attempt` (0-based): `base` doubled `attempt` times, at most `max`.
inline std::chrono::milliseconds BackoffCeiling(int attempt, std::chrono::milliseconds base,
                                                std::chrono::milliseconds max) {
  std::chrono::milliseconds d = base;
  for (int i = 0; i < attempt && d < max; ++i) d *= 2;
  return std::min(d, max);
}

// A uniformly random duration in [0, `ceiling`]. Thread-safe (one generator per thread).
inline std::chrono::milliseconds FullJitter(std::chrono::milliseconds ceiling) {
  if (ceiling <= std::chrono::milliseconds::zero()) return std::chrono::milliseconds::zero();
  thread_local std::mt19937_64 generator{std::random_device{}()};
  std::uniform_int_distribution<int64_t> pick(0, ceiling.count());
  return std::chrono::milliseconds(pick(generator));
}

// Delay before retry number `attempt` (0-based): full jitter under BackoffCeiling.
inline std::chrono::milliseconds BackoffDelay(int attempt, std::chrono::milliseconds base,
                                              std::chrono::milliseconds max) {
  return FullJitter(BackoffCeiling(attempt, base, max));
}

// The delays of one sequence of retries. Thread-compatible.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds max) : base_(base), max_(max) {}

  // The wait before the next attempt; each call doubles the ceiling of the next one.
  std::chrono::milliseconds Next() {
    std::chrono::milliseconds wait = BackoffDelay(attempts_, base_, max_);
    if (attempts_ < 64) ++attempts_;
    return wait;
  }
  // After a success: the next ceiling is `base` again.
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

// Rate limiters with client-go semantics, generic over the item type.
#ifndef KVSTORE_WORKQUEUE_RATE_LIMITER_H_
#define KVSTORE_WORKQUEUE_RATE_LIMITER_H_

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvstore/clock.h"
#include "kvstore/mutex.h"

namespace kvstore::workqueue {

// Decides how long an item waits before it is retried. Thread-safe. Users may subclass it.
template <typename T>
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  // How long `item` should wait now; counts a requeue.
  virtual std::chrono::nanoseconds When(const T& item) = 0;
  // Stops tracking `item` (it succeeded).
  virtual void Forget(const T& item) = 0;
  // How many times `item` was requeued since it was last forgotten.
  virtual int NumRequeues(const T& item) = 0;
};

// Back-off per item: `base` * 2^(requeues so far), capped at `max`.
template <typename T>
class ItemExponentialFailureRateLimiter : public RateLimiter<T> {
 public:
  ItemExponentialFailureRateLimiter(std::chrono::nanoseconds base, std::chrono::nanoseconds max)
      : base_(base), max_(max) {}

  std::chrono::nanoseconds When(const T& item) override {
    int exponent;
    {
      MutexLock lock(mu_);
      int& failures = failures_[item];
      exponent = failures;
      if (failures < std::numeric_limits<int>::max()) ++failures;
    }
    // Computed in floating point: a large exponent gives a huge value or infinity, never overflow.
    double backoff = static_cast<double>(base_.count()) * std::exp2(static_cast<double>(exponent));
    if (!(backoff < static_cast<double>(max_.count()))) return max_;
    return std::chrono::nanoseconds(static_cast<std::chrono::nanoseconds::rep>(backoff));
  }

  void Forget(const T& item) override {
    MutexLock lock(mu_);
    failures_.erase(item);
  }

  int NumRequeues(const T& item) override {
    MutexLock lock(mu_);
    auto it = failures_.find(item);
    return it == failures_.end() ? 0 : it->second;
  }

 private:
  const std::chrono::nanoseconds base_;
  const std::chrono::nanoseconds max_;
  Mutex mu_;  // guards failures_
  std::unordered_map<T, int> failures_
      ABSL_GUARDED_BY(mu_);  // requeues since the item was last forgotten
};

// `fast` for the first `max_fast_attempts` requeues of an item, `slow` after that.
template <typename T>
class ItemFastSlowRateLimiter : public RateLimiter<T> {
 public:
  ItemFastSlowRateLimiter(std::chrono::nanoseconds fast, std::chrono::nanoseconds slow,
                          int max_fast_attempts)
      : fast_(fast), slow_(slow), max_fast_attempts_(max_fast_attempts) {}

  std::chrono::nanoseconds When(const T& item) override {
    MutexLock lock(mu_);
    int& attempts = attempts_[item];
    if (attempts < std::numeric_limits<int>::max()) ++attempts;
    return attempts <= max_fast_attempts_ ? fast_ : slow_;
  }

  void Forget(const T& item) override {
    MutexLock lock(mu_);
    attempts_.erase(item);
  }

  int NumRequeues(const T& item) override {
    MutexLock lock(mu_);
    auto it = attempts_.find(item);
    return it == attempts_.end() ? 0 : it->second;
  }

 private:
  const std::chrono::nanoseconds fast_;
  const std::chrono::nanoseconds slow_;
  const int max_fast_attempts_;
  Mutex mu_;  // guards attempts_
  std::unordered_map<T, int> attempts_
      ABSL_GUARDED_BY(mu_);  // requeues since the item was last forgotten
};

// One token bucket shared by all items, like golang.org/x/time/rate's Limiter.Reserve().Delay():
// the bucket holds up to `burst` tokens (it starts full) and refills at `qps` tokens per second;
// each When takes a token, going into debt if none is left, and returns how long until that token
// exists. Infinite `qps` never delays. A `qps` <= 0 (or NaN) allows only the first `burst` calls,
// and `burst` <= 0 allows none; a call that is not allowed returns nanoseconds::max(). Does not
// track items: NumRequeues is always 0 and Forget does nothing.
template <typename T>
class BucketRateLimiter : public RateLimiter<T> {
 public:
  // `clock` measures the refill; null means SystemClock().
  BucketRateLimiter(double qps, int burst, std::shared_ptr<Clock> clock = nullptr)
      : qps_(std::isnan(qps) ? 0.0 : qps),
        burst_(burst),
        clock_(clock ? std::move(clock) : SystemClock()),
        tokens_(burst > 0 ? burst : 0),
        last_(clock_->Now()) {}

  std::chrono::nanoseconds When(const T&) override {
    constexpr auto kNever = std::chrono::nanoseconds::max();
    if (std::isinf(qps_) && qps_ > 0) return std::chrono::nanoseconds::zero();
    MutexLock lock(mu_);
    if (burst_ <= 0) return kNever;
    if (qps_ <= 0) {
      if (tokens_ < 1) return kNever;
      tokens_ -= 1;
      return std::chrono::nanoseconds::zero();
    }
    Clock::time_point now = clock_->Now();
    if (now > last_) {
      std::chrono::duration<double> elapsed = now - last_;
      tokens_ = std::min(tokens_ + elapsed.count() * qps_, static_cast<double>(burst_));
      last_ = now;
    }
    tokens_ -= 1;
    if (tokens_ >= 0) return std::chrono::nanoseconds::zero();
    double wait_ns = -tokens_ / qps_ * 1e9;
    if (!(wait_ns < static_cast<double>(kNever.count()))) return kNever;
    return std::chrono::nanoseconds(std::llround(wait_ns));
  }

  void Forget(const T&) override {}
  int NumRequeues(const T&) override { return 0; }

 private:
  const double qps_;
  const int burst_;
  const std::shared_ptr<Clock> clock_;
  Mutex mu_;  // guards tokens_ and last_
  double tokens_
      ABSL_GUARDED_BY(mu_);  // may be negative: tokens already promised to callers told to wait
  Clock::time_point last_ ABSL_GUARDED_BY(mu_);
};

// Combines limiters: When asks every one (each counts the requeue) and returns the longest delay,
// NumRequeues the largest count; Forget forgets in all. Null limiters are skipped.
template <typename T>
class MaxOfRateLimiter : public RateLimiter<T> {
 public:
  explicit MaxOfRateLimiter(std::vector<std::shared_ptr<RateLimiter<T>>> limiters)
      : limiters_(std::move(limiters)) {
    std::erase(limiters_, nullptr);
  }

  std::chrono::nanoseconds When(const T& item) override {
    std::chrono::nanoseconds longest = std::chrono::nanoseconds::zero();
    for (const auto& limiter : limiters_) longest = std::max(longest, limiter->When(item));
    return longest;
  }

  void Forget(const T& item) override {
    for (const auto& limiter : limiters_) limiter->Forget(item);
  }

  int NumRequeues(const T& item) override {
    int most = 0;
    for (const auto& limiter : limiters_) most = std::max(most, limiter->NumRequeues(item));
    return most;
  }

 private:
  std::vector<std::shared_ptr<RateLimiter<T>>> limiters_;  // immutable after construction
};

// client-go's default for controllers: per-item exponential back-off from 5 ms to 1000 s, and an
// overall bucket of 10 qps with a burst of 100.
// The bucket is refilled on `clock` (null: SystemClock()): a queue driven by a FakeClock passes
// it, so that no read of real time decides its delays.
template <typename T>
std::shared_ptr<RateLimiter<T>> DefaultControllerRateLimiter(std::shared_ptr<Clock> clock) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  return std::make_shared<MaxOfRateLimiter<T>>(std::vector<std::shared_ptr<RateLimiter<T>>>{
      std::make_shared<ItemExponentialFailureRateLimiter<T>>(milliseconds(5), seconds(1000)),
      std::make_shared<BucketRateLimiter<T>>(10.0, 100, std::move(clock)),
  });
}

template <typename T>
std::shared_ptr<RateLimiter<T>> DefaultControllerRateLimiter() {
  return DefaultControllerRateLimiter<T>(nullptr);
}

}  // namespace kvstore::workqueue

#endif  // KVSTORE_WORKQUEUE_RATE_LIMITER_H_

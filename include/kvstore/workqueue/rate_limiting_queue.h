// A delaying work queue that re-queues failed items through a RateLimiter (client-go's
// RateLimitingInterface).
#ifndef KVSTORE_WORKQUEUE_RATE_LIMITING_QUEUE_H_
#define KVSTORE_WORKQUEUE_RATE_LIMITING_QUEUE_H_

#include <chrono>
#include <memory>
#include <utility>

#include "kvstore/clock.h"
#include "kvstore/workqueue/delaying_queue.h"
#include "kvstore/workqueue/rate_limiter.h"

namespace kvstore::workqueue {

// Thread-safe.
template <typename T>
class RateLimitingQueue : public DelayingQueue<T> {
 public:
  // `rate_limiter` null means DefaultControllerRateLimiter<T>(clock); `clock` (null:
  // SystemClock()) drives the delays, and the default limiter's bucket (a limiter passed in keeps
  // its own clock).
  explicit RateLimitingQueue(std::shared_ptr<RateLimiter<T>> rate_limiter,
                             std::shared_ptr<Clock> clock = nullptr, QueueOptions opts = {})
      : DelayingQueue<T>(clock, std::move(opts)),
        rate_limiter_(rate_limiter ? std::move(rate_limiter)
                                   : DefaultControllerRateLimiter<T>(std::move(clock))) {}

  // Adds `item` after the delay the rate limiter asks for (which counts a requeue of it).
  void AddRateLimited(T item) {
    std::chrono::nanoseconds delay = rate_limiter_->When(item);
    this->AddAfter(std::move(item), delay);
  }

  // Tells the rate limiter that `item` succeeded: its back-off starts over. The item itself is
  // still to be marked Done.
  void Forget(const T& item) { rate_limiter_->Forget(item); }

  int NumRequeues(const T& item) { return rate_limiter_->NumRequeues(item); }

 private:
  const std::shared_ptr<RateLimiter<T>> rate_limiter_;
};

}  // namespace kvstore::workqueue

#endif  // KVSTORE_WORKQUEUE_RATE_LIMITING_QUEUE_H_

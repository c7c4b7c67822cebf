// The load one etcd backend may put on etcd, as Cilium bounds it: a request rate (another one
// until bootstrap completes) and a bound on requests in flight. EffectiveRequestLimits turns the
// configuration into the limits in force, in one place, so that a configured limit cannot turn
// into "no limit" on the way (cilium/cilium#15742); InflightGate enforces the bound.
#ifndef KVSTORE_BACKEND_ETCD_REQUEST_LIMITS_H_
#define KVSTORE_BACKEND_ETCD_REQUEST_LIMITS_H_

#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kvstore/context.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

struct RequestLimits {
  double qps = 0;            // 0: no rate limit
  double bootstrap_qps = 0;  // until bootstrap completes; 0: `qps` from the start
  size_t max_inflight = 0;   // 0: no limit
};

// The limits `config` asks for: InvalidArgument for a negative, NaN or infinite rate. An unset
// max_inflight follows qps (rounded up), as Cilium's etcd.maxInflight does.
inline absl::StatusOr<RequestLimits> EffectiveRequestLimits(const EtcdConfig& config) {
  for (const auto& [name, value] : {std::pair<const char*, double>{"qps", config.qps},
                                    {"bootstrap_qps", config.bootstrap_qps}}) {
    if (!std::isfinite(value) || value < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd config: ", name, " must be a finite number >= 0 (0: no limit), not ", value));
    }
  }
  RequestLimits limits{config.qps, config.bootstrap_qps, config.max_inflight};
  if (limits.max_inflight == 0 && limits.qps > 0) {
    limits.max_inflight = static_cast<size_t>(std::ceil(limits.qps));
  }
  return limits;
}

// At most `limit` holders at once (0: no limit). A blocking Enter waits for a slot; EnterAsync
// runs its function at once with a slot, or later, on the thread of the Leave that frees one (so
// it must not block). Thread-safe.
class InflightGate {
 public:
  explicit InflightGate(size_t limit) : limit_(limit) {}
  InflightGate(const InflightGate&) = delete;
  InflightGate& operator=(const InflightGate&) = delete;

  size_t limit() const { return limit_; }

  // Takes a slot; false (without one) once `ctx` is done first.
  bool Enter(const Context& ctx) {
    if (limit_ == 0) return true;
    MutexLock lock(mu_);
    if (!ctx.WaitOn(lock, cv_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return held_ < limit_ && waiting_.empty();
        }))
      return false;
    ++held_;
    return true;
  }
  // Runs `start` with a slot taken for it, now or once one is free; `start` calls Leave when
  // its request finished. Queued functions run in order, before blocked Enter calls get a slot.
  void EnterAsync(std::function<void()> start) {
    if (limit_ != 0) {
      MutexLock guard(mu_);
      if (held_ >= limit_ || !waiting_.empty()) {
        waiting_.push_back(std::move(start));
        return;
      }
      ++held_;
    }
    start();
  }
  // Gives the slot back: to the oldest queued function (run here), else to a blocked Enter.
  void Leave() {
    if (limit_ == 0) return;
    std::function<void()> next;
    {
      MutexLock guard(mu_);
      if (!waiting_.empty()) {
        next = std::move(waiting_.front());
        waiting_.pop_front();
      } else {
        --held_;
      }
    }
    if (next) {
      next();  // keeps the slot
    } else {
      cv_.notify_all();
    }
  }
  // Runs every queued function (each calls Leave in the end, as it fails at once): for shutdown.
  void Drain() {
    std::deque<std::function<void()>> waiting;
    {
      MutexLock guard(mu_);
      waiting.swap(waiting_);
      held_ += waiting.size();
    }
    for (auto& start : waiting) start();
  }
  size_t held() const {
    MutexLock guard(mu_);
    return held_;
  }

 private:
  const size_t limit_;
  mutable Mutex mu_;  // guards the two below
  CondVar cv_;
  size_t held_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::function<void()>> waiting_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_REQUEST_LIMITS_H_

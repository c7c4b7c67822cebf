// Time that tests must control. Production code takes a `std::shared_ptr<Clock>` (null meaning
// SystemClock()) and never calls std::chrono::steady_clock directly where a test needs to move
// time.
#ifndef KVSTORE_CLOCK_H_
#define KVSTORE_CLOCK_H_

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "kvstore/export.h"

namespace kvstore {

class KVSTORE_EXPORT Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  virtual ~Clock() = default;
  virtual time_point Now() const = 0;

  // Blocks on `cv` (whose mutex `lock` holds) until it is notified or until Now() >= `deadline`,
  // whichever comes first. May wake spuriously: callers re-check their condition in a loop.
  // REQUIRES: `lock` is locked; it is locked again on return.
  virtual void WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                         time_point deadline) const = 0;
};

// The real monotonic clock. Never null.
KVSTORE_EXPORT std::shared_ptr<Clock> SystemClock();

// A clock that only moves when told. Waits on it end when Advance/Set moves time past their
// deadline. Thread-safe.
class KVSTORE_EXPORT FakeClock : public Clock {
 public:
  explicit FakeClock(time_point start = time_point{} + std::chrono::hours(1));
  FakeClock(const FakeClock&) = delete;
  FakeClock& operator=(const FakeClock&) = delete;

  time_point Now() const override;
  void WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 time_point deadline) const override;

  // Moves time forward by `d` and wakes every waiter. REQUIRES: the caller holds no mutex that a
  // waiter on this clock uses.
  void Advance(duration d);
  void Set(time_point t);
  // Number of threads currently blocked in WaitUntil: lets a test wait until a component sleeps.
  size_t NumWaiters() const;

 private:
  struct Waiter;
  void WakeAll();

  mutable std::mutex mu_;  // guards now_ and waiters_
  time_point now_;
  mutable std::vector<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace kvstore

#endif  // KVSTORE_CLOCK_H_

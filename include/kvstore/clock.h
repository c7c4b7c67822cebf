// Time that tests must control. Production code takes a `std::shared_ptr<Clock>` (null meaning
// SystemClock()) and never calls std::chrono::steady_clock directly where a test needs to move
// time.
#ifndef KVSTORE_CLOCK_H_
#define KVSTORE_CLOCK_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "kvstore/export.h"
#include "kvstore/mutex.h"

namespace kvstore {

namespace internal {
struct TimerState;
}  // namespace internal

// A call scheduled by Clock::AfterFunc, as Go's time.AfterFunc returns. Copies share the timer;
// a default-constructed Timer has nothing to stop. Thread-safe.
class KVSTORE_EXPORT Timer {
 public:
  Timer() = default;
  // Prevents the call if it has not started: true when this stopped it, false when it already
  // ran, is running or was stopped before. The function is destroyed when stopped. Does not wait
  // for a call already running.
  bool Stop() const;

 private:
  friend class Clock;
  friend class FakeClock;
  explicit Timer(std::shared_ptr<internal::TimerState> state) : state_(std::move(state)) {}
  std::shared_ptr<internal::TimerState> state_;
};

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

  // Calls `fn` once `d` has passed on this clock (at once, soon, when `d` <= 0), on a thread of the
  // clock's: for SystemClock() the process's one timer thread, for a FakeClock the thread moving
  // its time. `fn` must be quick and must not block (post longer work to an executor); it runs
  // with no lock of the clock held. This is the library's one timer mechanism: every timeout,
  // retry, re-sync and deadline of the library goes through it, so a FakeClock drives them all.
  // The default (for clocks other than the library's) waits `d` of real time.
  virtual Timer AfterFunc(duration d, std::function<void()> fn) const;

  // The wall-clock time matching Now(), for timestamps written to a store (RFC 3339): the
  // system's wall clock for real clocks; a FakeClock's follows its own time.
  virtual std::chrono::system_clock::time_point WallNow() const {
    return std::chrono::system_clock::now();
  }

 protected:
  // Makes a Timer handle for `fn`, for clocks that implement AfterFunc themselves, and runs a
  // handle's function unless it was stopped.
  static std::pair<Timer, std::shared_ptr<internal::TimerState>> NewTimer(std::function<void()> fn);
  static void Fire(const std::shared_ptr<internal::TimerState>& state);
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

  // Timers run on the thread that moves time past their deadline (Advance, Set), in deadline
  // order, the clock showing each one's deadline while it runs. A timer due at once (d <= 0)
  // runs at the next Advance or Set, never inside AfterFunc.
  Timer AfterFunc(duration d, std::function<void()> fn) const override;
  // 2026-01-01T00:00:00Z at construction, moving with Now().
  std::chrono::system_clock::time_point WallNow() const override;

  // Moves time forward by `d`, runs the timers now due and wakes every waiter. REQUIRES: the
  // caller holds no mutex that a waiter or a timer's function on this clock uses.
  void Advance(duration d);
  void Set(time_point t);
  // Number of threads currently blocked in WaitUntil: lets a test wait until a component sleeps.
  size_t NumWaiters() const;
  // Timers scheduled and not yet run or stopped.
  size_t NumTimers() const;
  // The deadline of the earliest pending timer; time_point::max() when none is pending.
  time_point NextTimer() const;

 private:
  struct Waiter;
  void WakeAll();
  // Runs every timer due at or before `target`, moving now_ to each one's deadline, then sets
  // now_ to `target`.
  void MoveTo(time_point target);

  mutable Mutex mu_;
  time_point now_ ABSL_GUARDED_BY(mu_);
  const time_point start_;
  mutable std::vector<std::shared_ptr<Waiter>> waiters_ ABSL_GUARDED_BY(mu_);
  mutable std::map<std::pair<time_point, uint64_t>, std::shared_ptr<internal::TimerState>> timers_
      ABSL_GUARDED_BY(mu_);
  mutable uint64_t next_timer_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvstore

#endif  // KVSTORE_CLOCK_H_

#include "kvstore/clock.h"

#include <algorithm>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "core/guarded.h"
#include "core/thread_name.h"
#include "kvstore/mutex.h"

namespace kvstore {
namespace internal {

// One AfterFunc call. `fn` is taken by whoever first changes `pending`: Fire runs it, Stop
// destroys it.
struct TimerState {
  explicit TimerState(std::function<void()> fn) : fn(std::move(fn)) {}

  // The function if still pending, taken out; null otherwise.
  std::function<void()> Take() {
    MutexLock lock(mu);
    if (!pending) return nullptr;
    pending = false;
    return std::move(fn);
  }

  Mutex mu;
  bool pending ABSL_GUARDED_BY(mu) = true;
  std::function<void()> fn ABSL_GUARDED_BY(mu);
  // Where the real-time timer thread keeps it (set before it is shared), so that a stopped timer
  // leaves at once instead of at its deadline; unset for other clocks.
  std::optional<std::pair<std::chrono::steady_clock::time_point, uint64_t>> system_entry;
};

namespace {

using TimePoint = std::chrono::steady_clock::time_point;

// The timers of real time: one thread for the process, sleeping until the earliest deadline.
// It runs only while some timer is pending (and lingers a little, so that a steady stream of
// short timeouts does not start a thread each); it is joined when restarted and at exit. The
// object is never destroyed, so timers may still be set from static destructors; after exit
// began they never fire (a Context's deadline is still reported by Done() and ends waits).
class TimerThread {
 public:
  static TimerThread& Get() {
    static TimerThread* const timers = new TimerThread();
    // Destroyed at exit, in reverse order of construction: joins the thread.
    static const StopAtExit stop_at_exit{timers};
    return *timers;
  }

  // Schedules `state`. REQUIRES: `state` is not shared yet.
  void Add(TimePoint when, std::shared_ptr<TimerState> state) {
    MutexLock lock(mu_);
    if (stopped_) return;
    const bool earliest = entries_.empty() || when < entries_.begin()->first.first;
    const std::pair<TimePoint, uint64_t> key(when, next_id_++);
    state->system_entry = key;
    entries_.emplace(key, std::move(state));
    if (!running_) {
      // The previous thread, if any, has left its loop: it released mu_ for the last time.
      if (thread_.joinable()) thread_.join();
      // Set once the thread exists (its Loop waits for mu_): should starting it throw, the next
      // Add tries again instead of counting on a thread that never started.
      thread_ = std::thread([this] { Loop(); });
      running_ = true;
    } else if (earliest) {
      wake_ = true;
      cv_.notify_one();
    }
  }

  // Forgets a stopped timer, so that the thread can end once no timer is pending.
  void Remove(const std::pair<TimePoint, uint64_t>& entry) {
    std::shared_ptr<TimerState> removed;  // destroyed outside the lock
    MutexLock lock(mu_);
    auto it = entries_.find(entry);
    if (it == entries_.end()) return;
    removed = std::move(it->second);
    entries_.erase(it);
    // The thread may sleep until the deadline just removed: let it start lingering instead.
    if (entries_.empty()) {
      wake_ = true;
      cv_.notify_one();
    }
  }

 private:
  // How long the thread waits for a new timer once none is pending, before it ends.
  static constexpr auto kIdleLinger = std::chrono::seconds(2);

  struct StopAtExit {
    TimerThread* timers;
    ~StopAtExit() { timers->Stop(); }
  };

  TimerThread() = default;

  void Stop() {
    std::thread thread;
    std::map<std::pair<TimePoint, uint64_t>, std::shared_ptr<TimerState>> dropped;
    {
      MutexLock lock(mu_);
      stopped_ = true;
      wake_ = true;
      cv_.notify_one();
      // exit() called from a timer's function: this thread cannot join itself. Its loop ends
      // once that function returns; the handle stays in this object, which is never destroyed,
      // and the process ends without joining it.
      if (thread_.get_id() != std::this_thread::get_id()) thread.swap(thread_);
      dropped.swap(entries_);
    }
    if (thread.joinable()) thread.join();
  }

  bool Woken() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return wake_ || stopped_; }

  void Loop() {
    NameThisThread("kv-timer");
    MutexLock lock(mu_);
    while (!stopped_) {
      wake_ = false;
      if (entries_.empty()) {
        if (!cv_.wait_for(lock, kIdleLinger,
                          [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Woken(); }) &&
            entries_.empty()) {
          break;
        }
        continue;
      }
      auto first = entries_.begin();
      const TimePoint deadline = first->first.first;
      const TimePoint now = std::chrono::steady_clock::now();
      if (now < deadline) {
        cv_.wait_until(lock, deadline,
                       [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Woken(); });
        continue;
      }
      std::shared_ptr<TimerState> state = std::move(first->second);
      entries_.erase(first);
      lock.unlock();
      if (std::function<void()> fn = state->Take()) RunGuarded("a timer's function", fn);
      state.reset();
      lock.lock();
    }
    running_ = false;
  }

  Mutex mu_;
  CondVar cv_;  // wake_ or stopped_ was set
  std::map<std::pair<TimePoint, uint64_t>, std::shared_ptr<TimerState>> entries_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;     // the earliest deadline changed
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // thread_ is in Loop
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // exit began: no thread any more
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

TimePoint SaturatingAdd(TimePoint t, Clock::duration d) {
  if (d <= Clock::duration::zero()) return t;
  if (TimePoint::max() - t <= d) return TimePoint::max();
  return t + d;
}

class RealClock final : public Clock {
 public:
  time_point Now() const override { return std::chrono::steady_clock::now(); }
  void WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 time_point deadline) const override {
    cv.wait_until(lock, deadline);
  }
};

}  // namespace
}  // namespace internal

bool Timer::Stop() const {
  if (!state_) return false;
  std::function<void()> fn = state_->Take();
  if (fn == nullptr) return false;
  if (state_->system_entry) internal::TimerThread::Get().Remove(*state_->system_entry);
  return true;  // `fn` is destroyed here, outside the timer's lock
}

std::pair<Timer, std::shared_ptr<internal::TimerState>> Clock::NewTimer(std::function<void()> fn) {
  auto state = std::make_shared<internal::TimerState>(std::move(fn));
  return {Timer(state), state};
}

void Clock::Fire(const std::shared_ptr<internal::TimerState>& state) {
  if (std::function<void()> fn = state->Take()) fn();
}

Timer Clock::AfterFunc(duration d, std::function<void()> fn) const {
  auto [timer, state] = NewTimer(std::move(fn));
  internal::TimerThread::Get().Add(internal::SaturatingAdd(std::chrono::steady_clock::now(), d),
                                   std::move(state));
  return timer;
}

std::shared_ptr<Clock> SystemClock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<internal::RealClock>();
  return clock;
}

// One thread blocked in FakeClock::WaitUntil. `alive` (guarded by `mu`) stays true while the
// waiter is inside its wait, so while it is true `user_mu` and `cv` are valid. Lock order:
// Waiter::mu, then the waiter's own mutex; a waiter never takes Waiter::mu while holding its own.
struct FakeClock::Waiter {
  Mutex mu;
  bool alive ABSL_GUARDED_BY(mu) = true;
  std::mutex* user_mu = nullptr;
  std::condition_variable* cv = nullptr;
};

FakeClock::FakeClock(time_point start) : now_(start), start_(start) {}

FakeClock::time_point FakeClock::Now() const {
  MutexLock guard(mu_);
  return now_;
}

std::chrono::system_clock::time_point FakeClock::WallNow() const {
  // 2026-01-01T00:00:00Z.
  static constexpr std::chrono::seconds kWallStart{1767225600};
  const duration since_start = Now() - start_;
  return std::chrono::system_clock::time_point(kWallStart) +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(since_start);
}

Timer FakeClock::AfterFunc(duration d, std::function<void()> fn) const {
  auto [timer, state] = NewTimer(std::move(fn));
  {
    MutexLock guard(mu_);
    timers_.emplace(std::make_pair(internal::SaturatingAdd(now_, d), next_timer_id_++),
                    std::move(state));
  }
  return timer;
}

size_t FakeClock::NumTimers() const {
  MutexLock guard(mu_);
  size_t pending = 0;
  for (const auto& [when, state] : timers_) {
    MutexLock lock(state->mu);
    if (state->pending) ++pending;
  }
  return pending;
}

FakeClock::time_point FakeClock::NextTimer() const {
  MutexLock guard(mu_);
  for (const auto& [when, state] : timers_) {
    MutexLock lock(state->mu);
    if (state->pending) return when.first;
  }
  return time_point::max();
}

void FakeClock::WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          time_point deadline) const {
  auto waiter = std::make_shared<Waiter>();
  waiter->user_mu = lock.mutex();
  waiter->cv = &cv;
  {
    MutexLock guard(mu_);
    if (now_ >= deadline) return;
    waiters_.push_back(waiter);
  }
  // Advance takes our mutex before notifying, and we hold it until cv.wait releases it, so a move
  // of time after the check above cannot be missed.
  cv.wait(lock);
  // Unregister without holding the caller's mutex, to keep the lock order above.
  lock.unlock();
  {
    MutexLock guard(waiter->mu);
    waiter->alive = false;
  }
  {
    MutexLock guard(mu_);
    waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), waiter), waiters_.end());
  }
  lock.lock();
}

void FakeClock::MoveTo(time_point target) {
  while (true) {
    std::shared_ptr<internal::TimerState> due;
    {
      MutexLock guard(mu_);
      if (timers_.empty() || timers_.begin()->first.first > target) {
        now_ = std::max(now_, target);
        break;
      }
      auto first = timers_.begin();
      now_ = std::max(now_, first->first.first);
      due = std::move(first->second);
      timers_.erase(first);
    }
    Fire(due);
  }
}

void FakeClock::Advance(duration d) {
  MoveTo(internal::SaturatingAdd(Now(), d));
  WakeAll();
}

void FakeClock::Set(time_point t) {
  if (t < Now()) {
    MutexLock guard(mu_);
    now_ = t;  // back in time: nothing becomes due
  } else {
    MoveTo(t);
  }
  WakeAll();
}

size_t FakeClock::NumWaiters() const {
  MutexLock guard(mu_);
  return waiters_.size();
}

void FakeClock::WakeAll() {
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    MutexLock guard(mu_);
    waiters = waiters_;
  }
  for (const auto& waiter : waiters) {
    MutexLock guard(waiter->mu);
    if (!waiter->alive) continue;
    std::lock_guard<std::mutex> user_guard(*waiter->user_mu);  // the waiter's own mutex
    waiter->cv->notify_all();
  }
}

}  // namespace kvstore

// Go's context.Context: cancellation and deadlines for every blocking call. Small and cheap to
// copy; copies share their state. Thread-safe.
#ifndef KVSTORE_CONTEXT_H_
#define KVSTORE_CONTEXT_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "kvstore/clock.h"
#include "kvstore/export.h"
#include "kvstore/mutex.h"

namespace kvstore {

namespace internal {
struct ContextState;
}

class KVSTORE_EXPORT Context {
 public:
  // The background context: never done.
  Context();
  static Context Background();

  // True once cancelled or past its deadline (or its parent is done).
  bool Done() const;
  // OK while not done; then Cancelled or DeadlineExceeded, keeping the first reason forever.
  absl::Status Err() const;
  // The deadline, on the clock it was set on (WithTimeout's or WithDeadline's `clock`).
  std::optional<std::chrono::steady_clock::time_point> Deadline() const;
  // Sleeps up to `d`; returns true (early) if the context is or becomes done meanwhile.
  bool WaitFor(std::chrono::nanoseconds d) const;
  // Blocks until done. Never returns for the background context.
  void Wait() const;

  // Registers `fn` to run exactly once when the context becomes done (at once, on this thread, if
  // it already is). `fn` runs without any lock of the context held; it must not block for long.
  // Returns an id for RemoveCallback (0 when `fn` already ran or the context can never be done).
  uint64_t AddCallback(std::function<void()> fn) const;
  // Unregisters a callback. If it is running on another thread, waits until it has returned, so
  // whatever it captured may be destroyed afterwards.
  void RemoveCallback(uint64_t id) const;

  // Waits on `cv` until `pred()` holds or the context is done; returns pred(). The context wakes
  // the wait promptly when it becomes done. REQUIRES: `lock` holds the mutex `cv` is used with.
  // Not analysed for thread safety: `pred` may require the lock that `lock` holds, which the
  // analysis cannot see through a std::unique_lock.
  template <typename Predicate>
  bool WaitOn(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
              Predicate pred) const ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // The same through kvstore's annotated lock types (kvstore/mutex.h).
  template <typename Predicate>
  bool WaitOn(MutexLock& lock, CondVar& cv, Predicate pred) const {
    return WaitOn(lock.native(), cv.native(), std::move(pred));
  }

 private:
  friend std::pair<Context, std::function<void()>> WithCancel(const Context& parent);
  friend std::pair<Context, std::function<void()>> WithDeadline(
      const Context& parent, Clock::time_point deadline, const std::shared_ptr<Clock>& clock);
  explicit Context(std::shared_ptr<internal::ContextState> state);
  // The deadline when it is on real time (not on a test's clock), for waits that bound
  // themselves by it.
  std::optional<std::chrono::steady_clock::time_point> RealTimeDeadline() const;

  std::shared_ptr<internal::ContextState> state_;  // null: background
};

using CancelFunc = std::function<void()>;

// A child of `parent` that is done when `parent` is, or when the returned function is called.
KVSTORE_EXPORT std::pair<Context, CancelFunc> WithCancel(const Context& parent);
// Like WithCancel, and done with DeadlineExceeded once `d` has passed (real time).
KVSTORE_EXPORT std::pair<Context, CancelFunc> WithTimeout(const Context& parent,
                                                          std::chrono::nanoseconds d);
// Like WithTimeout, with `d` measured on `clock` (null: real time): a FakeClock moved past the
// deadline ends the context, its callbacks running on the thread that moved the clock.
KVSTORE_EXPORT std::pair<Context, CancelFunc> WithTimeout(const Context& parent,
                                                          std::chrono::nanoseconds d,
                                                          const std::shared_ptr<Clock>& clock);
// Like WithCancel, and done with DeadlineExceeded once `clock` (null: real time) reaches
// `deadline`. A parent's earlier deadline on the same clock is the child's too.
KVSTORE_EXPORT std::pair<Context, CancelFunc> WithDeadline(
    const Context& parent, Clock::time_point deadline,
    const std::shared_ptr<Clock>& clock = nullptr);

// Keeps a callback registered on a context for the lifetime of this object.
class KVSTORE_EXPORT ScopedContextCallback {
 public:
  ScopedContextCallback(const Context& ctx, std::function<void()> fn)
      : ctx_(ctx), id_(ctx.AddCallback(std::move(fn))) {}
  ~ScopedContextCallback() {
    if (id_ != 0) ctx_.RemoveCallback(id_);
  }
  ScopedContextCallback(const ScopedContextCallback&) = delete;
  ScopedContextCallback& operator=(const ScopedContextCallback&) = delete;

 private:
  Context ctx_;
  uint64_t id_;
};

template <typename Predicate>
bool Context::WaitOn(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                     Predicate pred) const ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (!state_) {  // background: only the predicate can end the wait
    cv.wait(lock, pred);
    return true;
  }
  std::mutex* mu = lock.mutex();
  // The deadline callback wakes the wait; waiting until the deadline as well keeps the wait
  // bounded when no timer thread runs any more (during exit).
  const std::optional<std::chrono::steady_clock::time_point> deadline = RealTimeDeadline();
  while (true) {
    if (pred()) return true;
    if (Done()) return false;
    // The callback takes the waiter's mutex before notifying, so the wake-up cannot be missed; it
    // is registered and removed without that mutex held, since it may run on this very thread.
    lock.unlock();
    uint64_t id = AddCallback([mu, &cv] {
      std::lock_guard<std::mutex> guard(*mu);
      cv.notify_all();
    });
    lock.lock();
    while (!pred() && !Done()) {
      if (deadline) {
        cv.wait_until(lock, *deadline);
      } else {
        cv.wait(lock);
      }
    }
    lock.unlock();
    if (id != 0) RemoveCallback(id);
    lock.lock();
  }
}

}  // namespace kvstore

#endif  // KVSTORE_CONTEXT_H_

// A deadline on a kvstore::Clock handed out as a Context, so that a thread blocked on something
// else (a Watcher's Next) also wakes when the clock reaches the deadline; with a FakeClock, when
// a test moves time past it.
#ifndef KVSTORE_STORE_CLOCK_ALARM_H_
#define KVSTORE_STORE_CLOCK_ALARM_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "kvstore/clock.h"
#include "kvstore/context.h"

namespace kvstore::store {

// Owns one thread that sleeps on the clock until the armed deadline and then cancels the context
// Arm returned. One deadline at a time. Thread-safe.
class ClockAlarm {
 public:
  // Starts the thread. REQUIRES: `clock` is not null.
  explicit ClockAlarm(std::shared_ptr<Clock> clock);
  ~ClockAlarm() { Stop(); }
  ClockAlarm(const ClockAlarm&) = delete;
  ClockAlarm& operator=(const ClockAlarm&) = delete;

  // A context that becomes done once the clock's Now() >= `deadline`. Replaces the previous
  // deadline; the context returned for it is cancelled at once (its waiter, if any, looks again).
  // After Stop: a context that is already done.
  Context Arm(Clock::time_point deadline);
  // Cancels the armed context and joins the thread. Idempotent; not from the alarm's own thread
  // (which runs no user code besides context callbacks).
  void Stop();

 private:
  void Loop();

  const std::shared_ptr<Clock> clock_;

  std::mutex mu_;               // guards the fields below
  std::condition_variable cv_;  // signals a new deadline and Stop
  bool stopping_ = false;
  std::optional<Clock::time_point> deadline_;  // set while armed
  CancelFunc cancel_;                          // of the armed context; null when not armed

  std::mutex join_mu_;  // serializes joining thread_
  std::thread thread_;  // started by the constructor, joined by Stop
};

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_CLOCK_ALARM_H_

#include "core/clock_sleep.h"

#include <condition_variable>
#include <mutex>

#include "kvstore/mutex.h"

namespace kvstore::internal {

bool SleepOnClock(const Context& ctx, const Clock& clock, Clock::duration d) {
  const Clock::time_point until = clock.Now() + d;
  Mutex mu;
  CondVar cv;
  ScopedContextCallback wake(ctx, [&] {
    MutexLock lock(mu);
    cv.notify_all();
  });
  MutexLock lock(mu);
  while (!ctx.Done() && clock.Now() < until) clock.WaitUntil(lock.native(), cv.native(), until);
  return !ctx.Done();
}

}  // namespace kvstore::internal

#include "core/clock_sleep.h"

#include <condition_variable>
#include <mutex>

namespace kvstore::internal {

bool SleepOnClock(const Context& ctx, const Clock& clock, Clock::duration d) {
  const Clock::time_point until = clock.Now() + d;
  std::mutex mu;
  std::condition_variable cv;
  ScopedContextCallback wake(ctx, [&] {
    std::lock_guard lock(mu);
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  while (!ctx.Done() && clock.Now() < until) clock.WaitUntil(lock, cv, until);
  return !ctx.Done();
}

}  // namespace kvstore::internal

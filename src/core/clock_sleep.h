// Sleeping on a kvstore::Clock that a Context can cut short: waits of components whose time tests
// move with a FakeClock.
#ifndef KVSTORE_CORE_CLOCK_SLEEP_H_
#define KVSTORE_CORE_CLOCK_SLEEP_H_

#include "kvstore/clock.h"
#include "kvstore/context.h"

namespace kvstore::internal {

// Blocks until `clock` reached Now() + `d` or `ctx` is done. Returns false when `ctx` is done.
bool SleepOnClock(const Context& ctx, const Clock& clock, Clock::duration d);

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_CLOCK_SLEEP_H_

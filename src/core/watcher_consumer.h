// The consumer's side of a Watcher beyond SPEC's Next and Stop: what a consumer that holds no
// thread while it waits (a coroutine on the executor, internal::NextEvents) needs. Private to
// the library: Watcher's public contract is SPEC's.
#ifndef KVSTORE_CORE_WATCHER_CONSUMER_H_
#define KVSTORE_CORE_WATCHER_CONSUMER_H_

#include <deque>
#include <functional>
#include <utility>

#include "core/watcher_core.h"
#include "kvstore/events.h"

namespace kvstore::internal {

class WatcherConsumer {
 public:
  enum class Take { kTook, kEmpty, kEnded };

  explicit WatcherConsumer(Watcher& watcher) : watcher_(watcher) {}

  // Appends every buffered event to `*events` (kTook); kEmpty when none is buffered and more may
  // come; kEnded once the watcher is closed and drained, or stopped. Never blocks.
  Take TryTakeBatch(std::deque<KeyValueEvent>* events) {
    const int took = watcher_.core_->TryTakeBatch(events);
    return took > 0 ? Take::kTook : took == 0 ? Take::kEmpty : Take::kEnded;
  }
  // Runs `fn` once an event is buffered or the watcher is closed or stopped (at once when it
  // is), outside the watcher's lock. `fn` must not block. A later call replaces a hook not yet
  // run.
  void NotifyWhenReadable(std::function<void()> fn) {
    watcher_.core_->NotifyWhenReadable(std::move(fn));
  }

 private:
  Watcher& watcher_;
};

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_WATCHER_CONSUMER_H_

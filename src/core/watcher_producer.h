// The producer's side of a Watcher beyond SPEC's Emit and Close: what the backends (and test
// fakes that produce events) need for flow control without a thread per watcher. Private to the
// library: Watcher's public contract is SPEC's.
#ifndef KVSTORE_CORE_WATCHER_PRODUCER_H_
#define KVSTORE_CORE_WATCHER_PRODUCER_H_

#include <functional>
#include <utility>

#include "core/watcher_core.h"
#include "kvstore/events.h"

namespace kvstore::internal {

class WatcherProducer {
 public:
  explicit WatcherProducer(Watcher& watcher) : watcher_(watcher) {}

  // Queues `ev` (moving from it) when there is room now; false, leaving `ev` as it was, when the
  // watcher is full, stopped or closed. Never blocks.
  bool TryEmit(KeyValueEvent& ev) { return watcher_.core_->TryEmit(ev); }
  // Runs `fn` once the watcher is at most half full, stopped or closed (at once when it is),
  // outside the watcher's lock. `fn` must not block. A later call replaces a hook not yet run.
  void NotifyWhenSpace(std::function<void()> fn) { watcher_.core_->NotifyWhenSpace(std::move(fn)); }
  // Runs `fn` once when the consumer calls Stop (at once if it did), on the consumer's thread.
  void SetStopHook(std::function<void()> fn) { watcher_.core_->SetStopHook(std::move(fn)); }
  // True once the consumer called Stop.
  bool Stopped() const { return watcher_.core_->Stopped(); }
  // True once closed and every buffered event was handed out.
  bool Closed() const { return watcher_.core_->Closed(); }

 private:
  Watcher& watcher_;
};

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_WATCHER_PRODUCER_H_

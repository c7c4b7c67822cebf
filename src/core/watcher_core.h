// The channel behind kvstore::Watcher: its buffer, its lock and the hooks the library's
// producers and consumers use for flow control without a thread per watcher. Private to the
// library; reached through WatcherProducer and WatcherConsumer.
#ifndef KVSTORE_CORE_WATCHER_CORE_H_
#define KVSTORE_CORE_WATCHER_CORE_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/mutex.h"

namespace kvstore::internal {

class WatcherCore {
 public:
  explicit WatcherCore(size_t capacity);

  // Watcher's public operations (include/kvstore/events.h).
  bool Emit(KeyValueEvent ev, const Context& ctx);
  void Close();
  std::optional<KeyValueEvent> Next(const Context& ctx);
  std::optional<KeyValueEvent> NextFor(std::chrono::nanoseconds timeout);
  bool NextBatch(const Context& ctx, std::deque<KeyValueEvent>* events);
  void Stop();

  // Consumer, without blocking: appends every buffered event to `*events` and returns 1; returns
  // 0 when none is buffered and more may come, -1 once closed and drained or stopped.
  int TryTakeBatch(std::deque<KeyValueEvent>* events);
  // Runs `fn` once an event is buffered, or the channel is closed or stopped: at once (on this
  // thread) when it already is, else on the thread that did it, outside the channel's lock. `fn`
  // must not block. One hook is kept: a later call replaces one not yet run.
  void NotifyWhenReadable(std::function<void()> fn);

  // Non-blocking Emit: queues `ev` (moving from it) when there is room now and returns true;
  // otherwise returns false and leaves `ev` as it was (full, stopped or closed).
  bool TryEmit(KeyValueEvent& ev);
  // Runs `fn` once as soon as the channel is at most half full (capacity / 2 events or fewer) or
  // is stopped or closed: at once (on this thread) when it already is, else on the thread that
  // made room (a consumer taking an event) or stopped or closed it, outside the channel's lock.
  // `fn` must not block. One hook is kept: a later call replaces one not yet run.
  void NotifyWhenSpace(std::function<void()> fn);
  // True once Stop() was called.
  bool Stopped() const;
  // True once closed and every buffered event was handed out.
  bool Closed() const;
  // Runs `fn` (once, from the thread calling Stop) when the consumer stops; producers use it to
  // wake their own loops. At once if already stopped. Only one hook is kept.
  void SetStopHook(std::function<void()> fn);

 private:
  // Appends `ev` and releases the lock; then wakes consumers that may wait for it (woken under
  // the lock, they would block on it again at once). REQUIRES: `lock` holds mu_, room in the
  // buffer.
  void PushLocked(KeyValueEvent ev, MutexLock& lock) ABSL_UNLOCK_FUNCTION(mu_);
  // The space hook, taken when it is due. REQUIRES: mu_ held.
  std::function<void()> TakeSpaceHookLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The readable hook, taken when it is due. REQUIRES: mu_ held.
  std::function<void()> TakeReadableHookLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands out the front event after a wait, and releases the lock; wakes waiting producers and
  // runs a due space hook outside it.
  std::optional<KeyValueEvent> PopLocked(MutexLock& lock) ABSL_UNLOCK_FUNCTION(mu_);

  const size_t capacity_;
  mutable Mutex mu_;  // guards the fields below
  CondVar cv_;
  std::deque<KeyValueEvent> buffer_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> stop_hook_ ABSL_GUARDED_BY(mu_);
  std::function<void()> space_hook_ ABSL_GUARDED_BY(mu_);
  std::function<void()> readable_hook_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_WATCHER_CORE_H_

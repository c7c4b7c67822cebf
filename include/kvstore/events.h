// Watch events and the bounded channel that carries them from a backend to a consumer.
#ifndef KVSTORE_EVENTS_H_
#define KVSTORE_EVENTS_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "kvstore/context.h"
#include "kvstore/export.h"

namespace kvstore {

namespace internal {
class WatcherProducer;
class WatcherConsumer;
}  // namespace internal

enum class EventType { kCreate, kModify, kDelete, kListDone };

// "create", "modify", "delete" or "list-done".
KVSTORE_EXPORT std::string_view EventTypeName(EventType type);

struct KVSTORE_EXPORT KeyValueEvent {
  EventType type = EventType::kCreate;
  std::string key;    // absolute key (with the watched prefix); empty for kListDone
  std::string value;  // for kDelete: the last value when known
  // Revision of the change (0 when unknown, e.g. synthetic events). Not part of equality.
  int64_t revision = 0;

  bool operator==(const KeyValueEvent& other) const {
    return type == other.type && key == other.key && value == other.value;
  }
};

// A bounded, closable channel of events between one producer (the backend) and one consumer.
// Every event emitted before Close() is delivered exactly once, in order.
// Thread-safe: Emit/Close may be called from any producer thread, Next/NextFor/Stop from consumers.
class KVSTORE_EXPORT Watcher {
 public:
  // capacity 0 means as small as possible (1).
  Watcher(std::string prefix, size_t capacity);
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;
  ~Watcher();

  // Producer: queues `ev`, blocking while the channel is full. Returns false (dropping `ev`) once
  // the consumer called Stop(), the channel was closed, or `ctx` is done.
  bool Emit(KeyValueEvent ev, const Context& ctx);
  // Producer: no more events. Buffered events are still delivered. Idempotent.
  void Close();

  // Consumer: the next event, blocking; nullopt once closed and drained.
  std::optional<KeyValueEvent> Next();
  // Consumer: like Next, but nullopt also when nothing arrived within `timeout`.
  std::optional<KeyValueEvent> NextFor(std::chrono::nanoseconds timeout);
  // Consumer: like Next, but nullopt also once `ctx` is done.
  std::optional<KeyValueEvent> Next(const Context& ctx);
  // Consumer: like Next(ctx), but hands over every event buffered when it wakes up (at least
  // one), appended to `*events` in order, instead of one per call: a consumer that keeps up takes
  // the channel's lock once per batch, and the producer refills the whole buffer per wake-up.
  // Returns false, appending nothing, once closed and drained, stopped, or `ctx` is done while
  // nothing is buffered. REQUIRES: `events` is not null.
  bool NextBatch(const Context& ctx, std::deque<KeyValueEvent>* events);

  // Consumer: stops the watch. Blocked and later Emit calls return false; returns once the
  // producer has closed the channel. Buffered events are discarded.
  void Stop();
  const std::string& Prefix() const { return prefix_; }

 private:
  // What the backends need for flow control, through internal::WatcherProducer
  // (src/core/watcher_producer.h): not part of the public contract.
  friend class internal::WatcherProducer;
  friend class internal::WatcherConsumer;

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

  const std::string prefix_;
  const size_t capacity_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::deque<KeyValueEvent> buffer_;
  bool closed_ = false;
  bool stopped_ = false;
  std::function<void()> stop_hook_;
  std::function<void()> space_hook_;
  std::function<void()> readable_hook_;

  // Appends `ev` and releases the lock; then wakes consumers that may wait for it (woken under
  // the lock, they would block on it again at once). REQUIRES: `lock` holds mu_, room in the
  // buffer.
  void PushLocked(KeyValueEvent ev, std::unique_lock<std::mutex>& lock);
  // The space hook, taken when it is due. REQUIRES: mu_ held.
  std::function<void()> TakeSpaceHookLocked();
  // The readable hook, taken when it is due. REQUIRES: mu_ held.
  std::function<void()> TakeReadableHookLocked();
  // Hands out the front event after a wait, and releases the lock; wakes waiting producers and
  // runs a due space hook outside it.
  std::optional<KeyValueEvent> PopLocked(std::unique_lock<std::mutex>& lock);
};

}  // namespace kvstore

#endif  // KVSTORE_EVENTS_H_

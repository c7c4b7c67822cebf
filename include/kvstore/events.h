// Watch events and the bounded channel that carries them from a backend to a consumer.
#ifndef KVSTORE_EVENTS_H_
#define KVSTORE_EVENTS_H_

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kvstore/context.h"
#include "kvstore/export.h"

namespace kvstore {

namespace internal {
class WatcherCore;
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
  // The channel itself, with what the backends and the library's coroutines need beyond this
  // contract (non-blocking takes and emits, readiness hooks), reached through
  // internal::WatcherProducer and internal::WatcherConsumer (src/core/watcher_*.h).
  friend class internal::WatcherProducer;
  friend class internal::WatcherConsumer;

  const std::string prefix_;
  const std::unique_ptr<internal::WatcherCore> core_;
};

}  // namespace kvstore

#endif  // KVSTORE_EVENTS_H_

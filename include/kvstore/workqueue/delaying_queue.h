// A work queue whose items can be added after a delay (client-go's DelayingInterface).
#ifndef KVSTORE_WORKQUEUE_DELAYING_QUEUE_H_
#define KVSTORE_WORKQUEUE_DELAYING_QUEUE_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include "kvstore/clock.h"
#include "kvstore/mutex.h"
#include "kvstore/workqueue/queue.h"

namespace kvstore::workqueue {

// A Queue<T> plus AddAfter. Items not yet due are held apart (not counted by Len()) and added to
// the queue, in ready-time order, by a timer of the clock (Clock::AfterFunc) once the clock
// reaches their ready time: the queue owns no thread, and a FakeClock moving past a ready time
// adds the item before Advance returns. ShutDown, ShutDownWithDrain and the destructor drop the
// items still delayed. Thread-safe.
template <typename T>
class DelayingQueue : public Queue<T> {
 public:
  // `clock` drives the delays; null means SystemClock().
  explicit DelayingQueue(std::shared_ptr<Clock> clock = nullptr, QueueOptions opts = {})
      : Queue<T>(std::move(opts)),
        clock_(clock ? std::move(clock) : SystemClock()),
        waiting_(std::make_shared<Waiting>()) {
    waiting_->queue = this;
  }
  ~DelayingQueue() override { StopWaiting(); }

  // Adds `item` once `delay` has passed; a `delay` <= 0 adds it at once. An item already delayed
  // keeps the earlier of its two ready times. Ignored once the queue is shutting down.
  void AddAfter(T item, std::chrono::nanoseconds delay) {
    if (this->ShuttingDown()) return;
    if (delay <= std::chrono::nanoseconds::zero()) {
      this->Add(std::move(item));
      return;
    }
    MutexLock lock(waiting_->mu);
    if (waiting_->queue == nullptr) return;
    Clock::time_point ready_at = SaturatingAdd(clock_->Now(), delay);
    auto known = waiting_->known.find(item);
    if (known != waiting_->known.end()) {
      if (known->second->first <= ready_at) return;
      waiting_->items.erase(known->second);
      known->second = waiting_->items.emplace(ready_at, std::move(item));
    } else {
      auto entry = waiting_->items.emplace(ready_at, item);
      waiting_->known.emplace(std::move(item), entry);
    }
    ArmLocked(*waiting_, *clock_);
  }

  void ShutDown() override {
    Queue<T>::ShutDown();
    StopWaiting();
  }

  // Drops the delayed items, then drains like Queue<T>::ShutDownWithDrain.
  void ShutDownWithDrain() override {
    StopWaiting();
    Queue<T>::ShutDownWithDrain();
  }

 private:
  using WaitingMap = std::multimap<Clock::time_point, T>;

  // The delayed items, shared with the clock's timer, which holds it weakly: a timer firing after
  // the queue stopped finds `queue` null and does nothing.
  struct Waiting {
    Mutex mu;  // guards every field; held while the timer adds due items to `queue`
    DelayingQueue* queue ABSL_GUARDED_BY(mu) = nullptr;  // null once stopped
    WaitingMap items
        ABSL_GUARDED_BY(mu);  // delayed items by ready time; equal times in insertion order
    std::unordered_map<T, typename WaitingMap::iterator> known
        ABSL_GUARDED_BY(mu);          // each delayed item's entry
    Timer timer ABSL_GUARDED_BY(mu);  // armed for `armed_at`
    std::optional<Clock::time_point> armed_at ABSL_GUARDED_BY(mu);
  };

  static Clock::time_point SaturatingAdd(Clock::time_point t, std::chrono::nanoseconds d) {
    auto room = Clock::time_point::max() - t;
    if (std::chrono::duration_cast<std::chrono::nanoseconds>(room) <= d) {
      return Clock::time_point::max();
    }
    return t + std::chrono::duration_cast<Clock::duration>(d);
  }

  // Arms the timer for the earliest ready time unless it already is. REQUIRES: waiting.mu held.
  static void ArmLocked(Waiting& waiting, const Clock& clock)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiting.mu) {
    if (waiting.items.empty()) return;
    const Clock::time_point first = waiting.items.begin()->first;
    if (waiting.armed_at.has_value() && *waiting.armed_at <= first) return;
    // An earlier item came: the later timer is replaced (a run already started finds nothing
    // due, or adds what is, and re-arms).
    waiting.timer.Stop();
    waiting.armed_at = first;
    std::weak_ptr<Waiting> weak = waiting.queue->waiting_;
    const std::shared_ptr<Clock> owner = waiting.queue->clock_;
    waiting.timer = clock.AfterFunc(first - clock.Now(), [weak, owner] {
      if (auto shared = weak.lock()) AddDue(*shared, *owner);
    });
  }

  // Adds every due item, in ready-time order (items due together keep their order), then arms
  // the timer for the next one.
  static void AddDue(Waiting& waiting, const Clock& clock) {
    MutexLock lock(waiting.mu);
    if (waiting.queue == nullptr) return;
    waiting.armed_at.reset();
    const Clock::time_point now = clock.Now();
    while (!waiting.items.empty() && waiting.items.begin()->first <= now) {
      auto node = waiting.items.extract(waiting.items.begin());
      waiting.known.erase(node.mapped());
      waiting.queue->Add(std::move(node.mapped()));
    }
    ArmLocked(waiting, clock);
  }

  void StopWaiting() {
    Timer timer;
    {
      MutexLock lock(waiting_->mu);
      waiting_->queue = nullptr;
      waiting_->items.clear();
      waiting_->known.clear();
      waiting_->armed_at.reset();
      timer = waiting_->timer;
    }
    timer.Stop();
  }

  const std::shared_ptr<Clock> clock_;
  const std::shared_ptr<Waiting> waiting_;
};

}  // namespace kvstore::workqueue

#endif  // KVSTORE_WORKQUEUE_DELAYING_QUEUE_H_

// A work queue with client-go semantics (k8s.io/client-go/util/workqueue), generic over the item
// type: an item is queued at most once however often it is added, and never handed to two workers
// at once.
#ifndef KVSTORE_WORKQUEUE_QUEUE_H_
#define KVSTORE_WORKQUEUE_QUEUE_H_

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kvstore/context.h"
#include "kvstore/mutex.h"

namespace kvstore::workqueue {

struct QueueOptions {
  // Called with the new Len() after every change of it (Add, Get, a Done that re-queues). It runs
  // with the queue's internal mutex held, so calls are serialized and in the order of the changes:
  // a gauge set from it always ends equal to Len(). It must be quick and must not call the queue.
  std::function<void(size_t len)> on_length_change;
};

// T must be copyable, hashable with std::hash<T> and equality-comparable. Thread-safe.
//
// An item is in at most one of two states: waiting (queued, counted by Len()) or processing (handed
// out by Get and not yet Done). Adding an item that is waiting does nothing; adding an item that is
// processing marks it dirty, and Done then queues it again once.
template <typename T>
class Queue {
 public:
  Queue() : Queue(QueueOptions{}) {}
  explicit Queue(QueueOptions opts) : on_length_change_(std::move(opts.on_length_change)) {}
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
  // REQUIRES: no thread is blocked in a method of this queue.
  virtual ~Queue() = default;

  // Queues `item` unless it is already waiting. Ignored once the queue is shutting down.
  void Add(T item) {
    MutexLock lock(mu_);
    if (shutting_down_) return;
    auto [it, inserted] = items_.try_emplace(std::move(item), State::kWaiting);
    if (!inserted) {
      // Waiting (or processing and already re-added): nothing to do. Processing: Done queues it.
      if (it->second == State::kProcessing) it->second = State::kProcessingAndAdded;
      return;
    }
    queue_.push_back(&*it);
    LengthChanged();
    items_cv_.notify_one();
    RunReadyHookAndUnlock(lock);
  }

  // Blocks until an item is waiting and hands it out; the caller must call Done(item) when
  // finished with it. After ShutDown, items still waiting are handed out; once none is left,
  // returns nullopt.
  std::optional<T> Get() {
    MutexLock lock(mu_);
    items_cv_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !queue_.empty() || shutting_down_;
    });
    if (queue_.empty()) return std::nullopt;
    return TakeFront();
  }

  // Like Get(), and also returns nullopt once `ctx` is done (at once if it already is).
  std::optional<T> Get(const Context& ctx) {
    MutexLock lock(mu_);
    if (!WaitForItem(ctx, lock)) return std::nullopt;
    return TakeFront();
  }

  // Like Get(ctx), but hands out up to `max_items` waiting items at once (in queue order) without
  // waiting for more than the first. Each must be Done. Empty where Get would return nullopt.
  // A `max_items` of 0 is taken as 1.
  std::vector<T> GetBatch(const Context& ctx, size_t max_items) {
    std::vector<T> items;
    MutexLock lock(mu_);
    if (!WaitForItem(ctx, lock)) return items;
    size_t n = std::min(queue_.size(), std::max<size_t>(max_items, 1));
    items.reserve(n);
    for (size_t i = 0; i < n; ++i) items.push_back(PopFront());
    LengthChanged();
    return items;
  }

  // Without blocking: hands out up to `max_items` waiting items (0 taken as 1) as GetBatch does,
  // each to be Done. Empty when none is waiting; `*ended` (when not null) then tells whether one
  // ever will be (false) or the queue is shut down and empty (true).
  std::vector<T> TryGetBatch(size_t max_items, bool* ended = nullptr) {
    std::vector<T> items;
    MutexLock lock(mu_);
    if (ended != nullptr) *ended = queue_.empty() && shutting_down_;
    if (queue_.empty()) return items;
    size_t n = std::min(queue_.size(), std::max<size_t>(max_items, 1));
    items.reserve(n);
    for (size_t i = 0; i < n; ++i) items.push_back(PopFront());
    LengthChanged();
    return items;
  }

  // Runs `fn` once an item is waiting or the queue is shutting down: at once (on this thread)
  // when it already is, else on the thread that adds the item or shuts the queue down, outside
  // the queue's lock. `fn` must be quick and must not call the queue. Every hook registered
  // runs at the next such moment (a consumer that finds nothing registers again), so several
  // consumers may wait at once. For consumers that hold no thread while they wait.
  void NotifyWhenReady(std::function<void()> fn) {
    MutexLock lock(mu_);
    ready_hooks_.push_back(std::move(fn));
    RunReadyHookAndUnlock(lock);
  }

  // Marks `item` as no longer processing; if it was added meanwhile, queues it again.
  void Done(const T& item) {
    MutexLock lock(mu_);
    auto it = items_.find(item);
    if (it == items_.end() || it->second == State::kWaiting) return;
    bool requeued = false;
    if (it->second == State::kProcessingAndAdded) {
      it->second = State::kWaiting;
      queue_.push_back(&*it);
      LengthChanged();
      items_cv_.notify_one();
      requeued = true;
    } else {
      items_.erase(it);
    }
    if (--num_processing_ == 0) drained_cv_.notify_all();
    if (requeued) {
      RunReadyHookAndUnlock(lock);
    } else {
      lock.unlock();
    }
  }

  // Number of items waiting (not those being processed).
  size_t Len() const {
    MutexLock lock(mu_);
    return queue_.size();
  }

  // Stops accepting items; Get hands out what is still waiting, then returns nullopt. Also makes a
  // concurrent ShutDownWithDrain return without waiting further.
  virtual void ShutDown() {
    MutexLock lock(mu_);
    shutting_down_ = true;
    drain_ = false;
    items_cv_.notify_all();
    drained_cv_.notify_all();
    RunReadyHookAndUnlock(lock);
  }

  // Like ShutDown, then blocks until every item being processed is Done (or until ShutDown is
  // called). REQUIRES: the caller is not itself holding an item that it would mark Done later.
  virtual void ShutDownWithDrain() {
    MutexLock lock(mu_);
    shutting_down_ = true;
    drain_ = true;
    items_cv_.notify_all();
    if (!ready_hooks_.empty()) {
      RunReadyHookAndUnlock(lock);
      lock.lock();
    }
    drained_cv_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return num_processing_ == 0 || !drain_;
    });
  }

  bool ShuttingDown() const {
    MutexLock lock(mu_);
    return shutting_down_;
  }

 private:
  // Releases the lock, then runs the ready hooks if they were due. REQUIRES: `lock` holds mu_.
  void RunReadyHookAndUnlock(MutexLock& lock) ABSL_UNLOCK_FUNCTION(mu_) {
    std::vector<std::function<void()>> hooks;
    if (!ready_hooks_.empty() && (!queue_.empty() || shutting_down_)) hooks.swap(ready_hooks_);
    lock.unlock(mu_);
    for (const auto& hook : hooks) hook();
  }

  // Waits until an item is waiting, returning false instead when the queue is shut down and empty
  // or `ctx` is done.
  bool WaitForItem(const Context& ctx, MutexLock& lock) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ctx.Done()) return false;
    ctx.WaitOn(lock, items_cv_, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !queue_.empty() || shutting_down_;
    });
    return !queue_.empty() && !ctx.Done();
  }

  // REQUIRES: mu_ held and queue_ not empty.
  T TakeFront() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    T item = PopFront();
    LengthChanged();
    return item;
  }

  // Moves the first waiting item to processing and returns a copy of it. REQUIRES: mu_ held and
  // queue_ not empty.
  T PopFront() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Entry* entry = queue_.front();
    queue_.pop_front();
    entry->second = State::kProcessing;
    ++num_processing_;
    return entry->first;
  }

  // REQUIRES: mu_ held.
  void LengthChanged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (on_length_change_) on_length_change_(queue_.size());
  }

  const std::function<void(size_t)> on_length_change_;

  // What the queue knows of an item; items it does not know are neither waiting nor processing.
  enum class State {
    kWaiting,             // in queue_
    kProcessing,          // handed out by Get, not yet Done
    kProcessingAndAdded,  // as kProcessing, and added meanwhile: Done queues it again
  };
  using ItemMap = std::unordered_map<T, State>;
  using Entry = typename ItemMap::value_type;

  mutable Mutex mu_;    // guards every field below
  CondVar items_cv_;    // an item was queued, or shutdown
  CondVar drained_cv_;  // num_processing_ became 0, or drain_ was cleared
  // Every waiting or processing item: one lookup per Add, Get and Done.
  ItemMap items_ ABSL_GUARDED_BY(mu_);
  // The waiting items, in order; entries of items_ (nodes are stable).
  std::deque<Entry*> queue_ ABSL_GUARDED_BY(mu_);
  size_t num_processing_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool drain_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> ready_hooks_ ABSL_GUARDED_BY(mu_);  // NotifyWhenReady's
};

}  // namespace kvstore::workqueue

#endif  // KVSTORE_WORKQUEUE_QUEUE_H_

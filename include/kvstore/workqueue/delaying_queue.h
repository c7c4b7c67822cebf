// A work queue whose items can be added after a delay (client-go's DelayingInterface).
#ifndef KVSTORE_WORKQUEUE_DELAYING_QUEUE_H_
#define KVSTORE_WORKQUEUE_DELAYING_QUEUE_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "kvstore/clock.h"
#include "kvstore/workqueue/queue.h"

namespace kvstore::workqueue {

// A Queue<T> plus AddAfter. Items not yet due are held apart (not counted by Len()) by a thread
// that this queue owns; it adds each to the queue once the clock reaches its ready time, and is
// stopped and joined by ShutDown, ShutDownWithDrain or the destructor. Items still delayed then are
// dropped. Thread-safe.
template <typename T>
class DelayingQueue : public Queue<T> {
 public:
  // `clock` drives the delays; null means SystemClock().
  explicit DelayingQueue(std::shared_ptr<Clock> clock = nullptr, QueueOptions opts = {})
      : Queue<T>(std::move(opts)), clock_(clock ? std::move(clock) : SystemClock()) {
    loop_ = std::thread([this] { WaitingLoop(); });
  }
  ~DelayingQueue() override { StopWaitingLoop(); }

  // Adds `item` once `delay` has passed; a `delay` <= 0 adds it at once. An item already delayed
  // keeps the earlier of its two ready times. Ignored once the queue is shutting down.
  void AddAfter(T item, std::chrono::nanoseconds delay) {
    if (this->ShuttingDown()) return;
    if (delay <= std::chrono::nanoseconds::zero()) {
      this->Add(std::move(item));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    Clock::time_point ready_at = SaturatingAdd(clock_->Now(), delay);
    auto known = known_.find(item);
    if (known != known_.end()) {
      if (known->second->first <= ready_at) return;
      waiting_.erase(known->second);
      known->second = waiting_.emplace(ready_at, std::move(item));
    } else {
      auto entry = waiting_.emplace(ready_at, item);
      known_.emplace(std::move(item), entry);
    }
    cv_.notify_one();
  }

  void ShutDown() override {
    Queue<T>::ShutDown();
    StopWaitingLoop();
  }

  // Drops the delayed items, then drains like Queue<T>::ShutDownWithDrain.
  void ShutDownWithDrain() override {
    StopWaitingLoop();
    Queue<T>::ShutDownWithDrain();
  }

 private:
  // The loop also wakes this often even without news: a safety net against a clock that misses a
  // wake-up, and it keeps deadlines far from the end of time.
  static constexpr std::chrono::seconds kMaxWait{10};

  static Clock::time_point SaturatingAdd(Clock::time_point t, std::chrono::nanoseconds d) {
    auto room = Clock::time_point::max() - t;
    if (std::chrono::duration_cast<std::chrono::nanoseconds>(room) <= d) {
      return Clock::time_point::max();
    }
    return t + std::chrono::duration_cast<Clock::duration>(d);
  }

  void WaitingLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      Clock::time_point now = clock_->Now();
      // All due items are added under mu_ in ready-time order, so items due together keep their
      // order in the queue.
      while (!waiting_.empty() && waiting_.begin()->first <= now) {
        auto node = waiting_.extract(waiting_.begin());
        known_.erase(node.mapped());
        this->Add(std::move(node.mapped()));
      }
      if (waiting_.empty()) {
        cv_.wait(lock);
      } else {
        clock_->WaitUntil(lock, cv_, std::min(waiting_.begin()->first, now + kMaxWait));
      }
    }
  }

  void StopWaitingLoop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      waiting_.clear();
      known_.clear();
      cv_.notify_all();
    }
    // Serializes concurrent shutdowns: std::thread::join may only be called once.
    std::lock_guard<std::mutex> join_lock(join_mu_);
    if (loop_.joinable()) loop_.join();
  }

  using WaitingMap = std::multimap<Clock::time_point, T>;

  const std::shared_ptr<Clock> clock_;

  std::mutex mu_;               // guards the fields below, up to loop_
  std::condition_variable cv_;  // an item was delayed, or stopping_ was set
  bool stopping_ = false;
  WaitingMap waiting_;  // delayed items by ready time; equal times in insertion order
  std::unordered_map<T, typename WaitingMap::iterator> known_;  // each delayed item's entry

  std::mutex join_mu_;  // guards loop_.join()
  std::thread loop_;
};

}  // namespace kvstore::workqueue

#endif  // KVSTORE_WORKQUEUE_DELAYING_QUEUE_H_

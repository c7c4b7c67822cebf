#include "backend/etcd/executor.h"

#include <algorithm>

namespace kvstore::etcd {

Executor::Executor(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([state = state_] { Loop(state); });
}

Executor::~Executor() { Shutdown(); }

void Executor::Post(std::function<void()> fn) {
  std::lock_guard<std::mutex> guard(state_->mu);
  if (state_->shutdown) return;
  state_->ready.push_back(std::move(fn));
  state_->cv.notify_one();
}

void Executor::PostAfter(std::chrono::steady_clock::duration delay, std::function<void()> fn) {
  std::lock_guard<std::mutex> guard(state_->mu);
  if (state_->shutdown) return;
  state_->timers.emplace(std::chrono::steady_clock::now() + delay, std::move(fn));
  // Every idle thread re-computes its wake-up time; one of them takes the new timer.
  state_->cv.notify_all();
}

void Executor::Shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> guard(threads_mu_);
    threads.swap(threads_);
  }
  std::deque<std::function<void()>> dropped_ready;
  std::multimap<TimePoint, std::function<void()>> dropped_timers;
  {
    std::lock_guard<std::mutex> guard(state_->mu);
    state_->shutdown = true;
    dropped_ready.swap(state_->ready);
    dropped_timers.swap(state_->timers);
    state_->cv.notify_all();
  }
  for (std::thread& t : threads) {
    if (t.get_id() == std::this_thread::get_id()) {
      t.detach();  // this very task is running on it; it ends after the task
    } else {
      t.join();
    }
  }
  // The dropped tasks are destroyed here, outside the lock: their captures may take other locks.
}

void Executor::Loop(std::shared_ptr<State> state) {
  std::unique_lock<std::mutex> lock(state->mu);
  while (!state->shutdown) {
    auto now = std::chrono::steady_clock::now();
    while (!state->timers.empty() && state->timers.begin()->first <= now) {
      state->ready.push_back(std::move(state->timers.begin()->second));
      state->timers.erase(state->timers.begin());
    }
    if (!state->ready.empty()) {
      std::function<void()> fn = std::move(state->ready.front());
      state->ready.pop_front();
      if (!state->ready.empty()) state->cv.notify_one();
      lock.unlock();
      fn();
      fn = nullptr;  // destroy captures outside the lock
      lock.lock();
      continue;
    }
    if (state->timers.empty()) {
      state->cv.wait(lock);
    } else {
      // A copy: the timer may be taken by another thread while this one sleeps.
      const auto next = state->timers.begin()->first;
      state->cv.wait_until(lock, next);
    }
  }
}

}  // namespace kvstore::etcd

#include "backend/etcd/executor.h"

#include <utility>

namespace kvstore::etcd {

Executor::Executor(int threads, std::shared_ptr<Clock> clock)
    : clock_(clock ? std::move(clock) : SystemClock()), state_(std::make_shared<State>(clock_)) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([state = state_] { Loop(state); });
}

Executor::~Executor() {
  Shutdown();
  std::vector<std::thread> left;
  {
    std::lock_guard<std::mutex> guard(threads_mu_);
    left.swap(threads_);
  }
  for (std::thread& thread : left) {
    if (thread.get_id() == std::this_thread::get_id()) {
      // Destroyed by one of our own tasks: this thread ends once that task returns.
      internal::ThreadReaper::Instance().Adopt(std::move(thread));
    } else {
      thread.join();
    }
  }
}

void Executor::Post(std::function<void()> fn) {
  std::lock_guard<std::mutex> guard(state_->mu);
  if (state_->shutdown) return;
  state_->ready.push_back(std::move(fn));
  state_->cv.notify_one();
}

void Executor::PostAfter(Clock::duration delay, std::function<void()> fn) {
  std::lock_guard<std::mutex> guard(state_->mu);
  if (state_->shutdown) return;
  state_->timers.emplace(clock_->Now() + delay, std::move(fn));
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
  std::multimap<Clock::time_point, std::function<void()>> dropped_timers;
  {
    std::lock_guard<std::mutex> guard(state_->mu);
    state_->shutdown = true;
    dropped_ready.swap(state_->ready);
    dropped_timers.swap(state_->timers);
    state_->cv.notify_all();
  }
  std::vector<std::thread> running_this_task;
  for (std::thread& thread : threads) {
    if (thread.get_id() == std::this_thread::get_id()) {
      running_this_task.push_back(std::move(thread));  // the destructor joins it
    } else {
      thread.join();
    }
  }
  if (!running_this_task.empty()) {
    std::lock_guard<std::mutex> guard(threads_mu_);
    for (std::thread& thread : running_this_task) threads_.push_back(std::move(thread));
  }
  // The dropped tasks are destroyed here, outside the lock: their captures may take other locks.
}

void Executor::Loop(const std::shared_ptr<State>& state) {
  std::unique_lock<std::mutex> lock(state->mu);
  while (!state->shutdown) {
    const Clock::time_point now = state->clock->Now();
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
      const Clock::time_point next = state->timers.begin()->first;
      state->clock->WaitUntil(lock, state->cv, next);
    }
  }
}

}  // namespace kvstore::etcd

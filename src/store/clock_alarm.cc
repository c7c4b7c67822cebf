#include "store/clock_alarm.h"

#include <utility>

namespace kvstore::store {

ClockAlarm::ClockAlarm(std::shared_ptr<Clock> clock) : clock_(std::move(clock)) {
  thread_ = std::thread([this] { Loop(); });
}

Context ClockAlarm::Arm(Clock::time_point deadline) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  CancelFunc replaced;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (stopping_) {
      replaced = std::move(cancel);
    } else {
      replaced = std::exchange(cancel_, std::move(cancel));
      deadline_ = deadline;
      cv_.notify_all();
    }
  }
  // Cancelled outside mu_: cancelling runs the context's callbacks, which take their waiters'
  // locks.
  if (replaced) replaced();
  return ctx;
}

void ClockAlarm::Stop() {
  CancelFunc cancel;
  {
    std::lock_guard<std::mutex> guard(mu_);
    stopping_ = true;
    deadline_.reset();
    cancel = std::exchange(cancel_, nullptr);
    cv_.notify_all();
  }
  if (cancel) cancel();
  std::lock_guard<std::mutex> join_guard(join_mu_);
  if (thread_.joinable()) thread_.join();
}

void ClockAlarm::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (!deadline_.has_value()) {
      cv_.wait(lock);
      continue;
    }
    if (clock_->Now() < *deadline_) {
      clock_->WaitUntil(lock, cv_, *deadline_);
      continue;
    }
    deadline_.reset();
    CancelFunc cancel = std::exchange(cancel_, nullptr);
    lock.unlock();
    cancel();
    lock.lock();
  }
}

}  // namespace kvstore::store

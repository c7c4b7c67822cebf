#include "kvstore/clock.h"

#include <algorithm>

namespace kvstore {
namespace {

class RealClock final : public Clock {
 public:
  time_point Now() const override { return std::chrono::steady_clock::now(); }
  void WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 time_point deadline) const override {
    cv.wait_until(lock, deadline);
  }
};

}  // namespace

std::shared_ptr<Clock> SystemClock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<RealClock>();
  return clock;
}

// One thread blocked in FakeClock::WaitUntil. `alive` (guarded by `mu`) stays true while the
// waiter is inside its wait, so while it is true `user_mu` and `cv` are valid. Lock order:
// Waiter::mu, then the waiter's own mutex; a waiter never takes Waiter::mu while holding its own.
struct FakeClock::Waiter {
  std::mutex mu;
  bool alive = true;
  std::mutex* user_mu = nullptr;
  std::condition_variable* cv = nullptr;
};

FakeClock::FakeClock(time_point start) : now_(start) {}

FakeClock::time_point FakeClock::Now() const {
  std::lock_guard<std::mutex> guard(mu_);
  return now_;
}

void FakeClock::WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          time_point deadline) const {
  auto waiter = std::make_shared<Waiter>();
  waiter->user_mu = lock.mutex();
  waiter->cv = &cv;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (now_ >= deadline) return;
    waiters_.push_back(waiter);
  }
  // Advance takes our mutex before notifying, and we hold it until cv.wait releases it, so a move
  // of time after the check above cannot be missed.
  cv.wait(lock);
  // Unregister without holding the caller's mutex, to keep the lock order above.
  lock.unlock();
  {
    std::lock_guard<std::mutex> guard(waiter->mu);
    waiter->alive = false;
  }
  {
    std::lock_guard<std::mutex> guard(mu_);
    waiters_.erase(std::remove(waiters_.begin(), waiters_.end(), waiter), waiters_.end());
  }
  lock.lock();
}

void FakeClock::Advance(duration d) {
  {
    std::lock_guard<std::mutex> guard(mu_);
    now_ += d;
  }
  WakeAll();
}

void FakeClock::Set(time_point t) {
  {
    std::lock_guard<std::mutex> guard(mu_);
    now_ = t;
  }
  WakeAll();
}

size_t FakeClock::NumWaiters() const {
  std::lock_guard<std::mutex> guard(mu_);
  return waiters_.size();
}

void FakeClock::WakeAll() {
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    std::lock_guard<std::mutex> guard(mu_);
    waiters = waiters_;
  }
  for (const auto& waiter : waiters) {
    std::lock_guard<std::mutex> guard(waiter->mu);
    if (!waiter->alive) continue;
    std::lock_guard<std::mutex> user_guard(*waiter->user_mu);
    waiter->cv->notify_all();
  }
}

}  // namespace kvstore

#include "backend/etcd/executor.h"

#include <utility>
#include <vector>

#include "core/guarded.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

Executor::Executor(std::shared_ptr<Clock> clock, std::shared_ptr<kvstore::Executor> executor)
    : clock_(clock ? std::move(clock) : SystemClock()),
      executor_(executor ? std::move(executor) : DefaultExecutor()),
      state_(std::make_shared<State>()) {}

Executor::~Executor() { Shutdown(); }

void Executor::Run(const std::shared_ptr<State>& state, const std::function<void()>& fn) {
  const std::thread::id self = std::this_thread::get_id();
  {
    MutexLock lock(state->mu);
    if (state->shutdown) return;
    state->running.insert(self);
  }
  // Caught here: a task that threw would otherwise stay in `running`, and Shutdown would wait for
  // it forever.
  internal::RunGuarded("a task of the etcd backend", fn);
  MutexLock lock(state->mu);
  state->running.erase(state->running.find(self));
  state->cv.notify_all();
}

void Executor::Post(std::function<void()> fn) {
  {
    MutexLock lock(state_->mu);
    if (state_->shutdown) return;
  }
  executor_->Post([state = state_, fn = std::move(fn)] { Run(state, fn); });
}

void Executor::PostAfter(Clock::duration delay, std::function<void()> fn) {
  // Due now: no timer (a FakeClock runs a timer due now only when it is moved next).
  if (delay <= Clock::duration::zero()) return Post(std::move(fn));
  MutexLock lock(state_->mu);
  if (state_->shutdown) return;
  const uint64_t id = state_->next_timer++;
  std::weak_ptr<State> weak = state_;
  // The timer only hands the task over: tasks run on the executor, never on the clock's thread.
  Timer timer =
      clock_->AfterFunc(delay, [weak, id, executor = executor_, fn = std::move(fn)]() mutable {
        std::shared_ptr<State> state = weak.lock();
        if (!state) return;
        {
          MutexLock lock(state->mu);
          if (state->shutdown) return;
          state->timers.erase(id);
        }
        executor->Post([state, fn = std::move(fn)] { Run(state, fn); });
      });
  state_->timers.emplace(id, std::move(timer));
}

void Executor::Shutdown() {
  std::map<uint64_t, Timer> timers;
  const std::thread::id self = std::this_thread::get_id();
  {
    MutexLock lock(state_->mu);
    state_->shutdown = true;
    timers.swap(state_->timers);
    // Tasks already running end by themselves; those queued see `shutdown` and do nothing.
    state_->cv.wait(lock, [this, self]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
      return state_->running.size() == state_->running.count(self);
    });
  }
  // Stopped outside the lock: a timer's function destroyed here may hold other locks' owners.
  for (auto& [id, timer] : timers) timer.Stop();
}

}  // namespace kvstore::etcd

// A small fixed pool of threads running the backend's background work: watch event delivery,
// timers (retries, lease keep-alives) and lease-expired observers. Its size does not depend on the
// number of watchers or leases. Timers follow a Clock, so that tests move time with a FakeClock.
#ifndef KVSTORE_BACKEND_ETCD_EXECUTOR_H_
#define KVSTORE_BACKEND_ETCD_EXECUTOR_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/thread_reaper.h"
#include "kvstore/clock.h"

namespace kvstore::etcd {

class Executor {
 public:
  // `clock` (null: SystemClock()) decides when delayed tasks are due.
  explicit Executor(int threads, std::shared_ptr<Clock> clock = nullptr);
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  // Shutdown(), then joins the thread a Shutdown from a task left running: when it is this very
  // thread, internal::ThreadReaper joins it. REQUIRES: a task that shut the executor down does not
  // wait for the thread destroying it.
  ~Executor();

  // Runs `fn` on a pool thread. Dropped once shut down.
  void Post(std::function<void()> fn);
  // Runs `fn` on a pool thread once `delay` has passed on the clock. Dropped once shut down.
  void PostAfter(Clock::duration delay, std::function<void()> fn);

  // Drops queued tasks, waits for running ones and joins the threads. Idempotent. From a task
  // (one that closes the backend), the thread running it is not joined here, as it cannot join
  // itself: it ends once the task returns, and the destructor joins it. REQUIRES: no two threads
  // call it at once (a second one would return before the first joined; EtcdBackend::Close and
  // LeaseManager::Shutdown run once).
  void Shutdown();

  // The clock the timers follow; components that schedule on this executor measure time by it.
  const std::shared_ptr<Clock>& clock() const { return clock_; }

 private:
  // Shared with the threads: a thread handed to the ThreadReaper may still return from its last
  // task after the Executor is gone.
  struct State {
    explicit State(std::shared_ptr<Clock> clock) : clock(std::move(clock)) {}
    const std::shared_ptr<Clock> clock;
    std::mutex mu;  // guards everything below
    std::condition_variable cv;
    bool shutdown = false;
    std::deque<std::function<void()>> ready;
    std::multimap<Clock::time_point, std::function<void()>> timers;
  };
  static void Loop(const std::shared_ptr<State>& state);

  const std::shared_ptr<Clock> clock_;
  const std::shared_ptr<State> state_;
  std::mutex threads_mu_;  // guards threads_
  // Not joined yet: the pool, or after a Shutdown from a task, the thread that ran it.
  std::vector<std::thread> threads_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_EXECUTOR_H_

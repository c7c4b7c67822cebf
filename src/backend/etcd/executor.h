// The etcd backend's background work (watch event delivery, list pages, retries, lease
// keep-alives, lease-expired observers, asynchronous writes that wait for a lease first) as
// tasks on a shared executor, with timers from the backend's Clock. A backend owns no
// thread: a process runs the same threads for one backend or for hundreds.
#ifndef KVSTORE_BACKEND_ETCD_EXECUTOR_H_
#define KVSTORE_BACKEND_ETCD_EXECUTOR_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

// The tasks of one backend (or of one of its parts) on a shared executor, which it can shut
// down: queued and delayed tasks are then dropped, and Shutdown waits for those running.
class Executor {
 public:
  // `clock` (null: SystemClock()) decides when delayed tasks are due. Tasks run on `executor`
  // (null: DefaultExecutor()): concurrently on a pool, one at a time on a Strand.
  explicit Executor(std::shared_ptr<Clock> clock = nullptr,
                    std::shared_ptr<kvstore::Executor> executor = nullptr);
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  ~Executor();  // Shutdown()

  // Runs `fn` on the executor. Dropped once shut down.
  void Post(std::function<void()> fn);
  // Runs `fn` on the executor once `delay` has passed on the clock. Dropped once shut down.
  void PostAfter(Clock::duration delay, std::function<void()> fn);

  // Drops queued and delayed tasks and waits for running ones, except one running on the calling
  // thread (a task that closes the backend): that one goes on until it returns. Idempotent.
  void Shutdown();

  // The clock the timers follow; components that schedule on this executor measure time by it.
  const std::shared_ptr<Clock>& clock() const { return clock_; }

 private:
  // Shared with the tasks, which may outlive the Executor object by the end of the one running
  // its Shutdown.
  struct State {
    Mutex mu;
    CondVar cv;  // a task finished
    bool shutdown ABSL_GUARDED_BY(mu) = false;
    // Threads running a task, once each per task they run (a task may post and wait for none).
    std::multiset<std::thread::id> running ABSL_GUARDED_BY(mu);
    std::map<uint64_t, Timer> timers ABSL_GUARDED_BY(mu);  // PostAfter's, not fired yet
    uint64_t next_timer ABSL_GUARDED_BY(mu) = 0;
  };
  static void Run(const std::shared_ptr<State>& state, const std::function<void()>& fn);

  const std::shared_ptr<Clock> clock_;
  const std::shared_ptr<kvstore::Executor> executor_;
  const std::shared_ptr<State> state_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_EXECUTOR_H_

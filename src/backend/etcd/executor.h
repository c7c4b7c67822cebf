// A small fixed pool of threads running the backend's background work: watch event delivery,
// timers (retries, lease keep-alives) and lease-expired observers. Its size does not depend on the
// number of watchers or leases.
#ifndef KVSTORE_BACKEND_ETCD_EXECUTOR_H_
#define KVSTORE_BACKEND_ETCD_EXECUTOR_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace kvstore::etcd {

class Executor {
 public:
  explicit Executor(int threads);
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  ~Executor();  // Shutdown()

  // Runs `fn` on a pool thread. Dropped once shut down.
  void Post(std::function<void()> fn);
  // Runs `fn` on a pool thread after `delay`. Dropped once shut down.
  void PostAfter(std::chrono::steady_clock::duration delay, std::function<void()> fn);

  // Drops queued tasks, waits for running ones and joins the threads. Idempotent. From a pool
  // thread (a task that closes the backend), that thread is left to finish its task on its own.
  void Shutdown();

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  // Shared with the threads, so that a thread left running by Shutdown outlives the Executor.
  struct State {
    std::mutex mu;  // guards everything below
    std::condition_variable cv;
    bool shutdown = false;
    std::deque<std::function<void()>> ready;
    std::multimap<TimePoint, std::function<void()>> timers;
  };
  static void Loop(std::shared_ptr<State> state);

  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::mutex threads_mu_;  // guards threads_
  std::vector<std::thread> threads_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_EXECUTOR_H_

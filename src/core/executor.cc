#include "kvstore/executor.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "core/blocking_pool.h"
#include "core/guarded.h"
#include "core/task.h"

namespace kvstore {
namespace internal {
namespace {

// A pool of threads. Never destroyed, so that tasks may still be posted from static destructors;
// at exit its threads are stopped and joined (StopAtExit), and later tasks are destroyed unrun.
// A fixed pool starts all its threads on first use. An elastic one starts a thread only when a
// task finds none idle (up to `max_threads`), and a thread idle for kIdleLinger ends: for
// blocking calls, whose number in flight is what it must follow. Beyond `max_threads`, tasks
// wait; in a pool that grows when stalled, only until no thread took a task for kStallGrace:
// then every thread is held by a call that blocks (an observer waiting for its reader) and the
// pool adds one, so that calls which block for long delay only themselves, never the calls
// queued behind them. A monitor thread, running only while tasks wait at the limit, watches for
// that.
class ThreadPool final : public Executor {
 public:
  ThreadPool(size_t max_threads, bool elastic, bool grow_when_stalled = false)
      : max_threads_(max_threads), elastic_(elastic), grow_when_stalled_(grow_when_stalled) {}

  void Post(std::function<void()> task) override {
    std::vector<std::thread> finished;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Once stopped, `task` is destroyed by the caller's frame after the lock is released (the
      // parameter outlives `lock`).
      if (stopped_) return;
      ready_.push_back(std::move(task));
      cv_.notify_one();
      finished.swap(finished_);
      if (elastic_) {
        if (idle_ < ready_.size()) {
          if (threads_.size() < max_threads_) {
            StartThread();
          } else if (grow_when_stalled_ && !monitoring_) {
            monitoring_ = true;
            std::thread monitor([this] { Monitor(); });
            const std::thread::id id = monitor.get_id();
            threads_.emplace(id, std::move(monitor));
          }
        }
      } else if (threads_.empty()) {
        while (threads_.size() < max_threads_) StartThread();
      }
    }
    for (std::thread& thread : finished) thread.join();
  }

  void Stop() {
    std::vector<std::thread> threads;
    std::deque<std::function<void()>> dropped;
    {
      std::unique_lock<std::mutex> lock(mu_);
      stopped_ = true;
      cv_.notify_all();
      monitor_cv_.notify_all();
      // exit() called from a task: this thread cannot join itself. It ends once that task
      // returns; its handle stays in threads_ (the pool is never destroyed), unjoined.
      for (auto it = threads_.begin(); it != threads_.end();) {
        if (it->first == std::this_thread::get_id()) {
          ++it;
          continue;
        }
        threads.push_back(std::move(it->second));
        it = threads_.erase(it);
      }
      for (std::thread& thread : finished_) threads.push_back(std::move(thread));
      finished_.clear();
      dropped.swap(ready_);
    }
    for (std::thread& thread : threads) thread.join();
  }

  size_t max_threads() const { return max_threads_; }

 private:
  static constexpr auto kIdleLinger = std::chrono::seconds(2);
  static constexpr auto kStallGrace = std::chrono::milliseconds(20);

  // Moves the calling pool thread, which is about to return, to finished_.
  void Retire() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto self = threads_.find(std::this_thread::get_id());
    if (self != threads_.end()) {
      finished_.push_back(std::move(self->second));
      threads_.erase(self);
    }
  }

  // An elastic pool's monitor: while tasks wait, adds a thread whenever none was taken for
  // kStallGrace. Ends once no task waits.
  void Monitor() {
    std::unique_lock<std::mutex> lock(mu_);
    uint64_t seen = taken_;
    while (true) {
      monitor_cv_.wait_for(lock, kStallGrace, [this] { return stopped_; });
      if (stopped_) return;
      if (ready_.empty()) break;
      if (taken_ == seen && idle_ == 0) StartThread();
      seen = taken_;
    }
    monitoring_ = false;
    Retire();
  }

  void StartThread() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::thread thread([this] { Loop(); });
    const std::thread::id id = thread.get_id();
    threads_.emplace(id, std::move(thread));
  }

  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_ || !ready_.empty(); }

  void Loop() {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ++idle_;
        bool woken = true;
        if (elastic_) {
          woken = cv_.wait_for(lock, kIdleLinger, [this] { return HasWork(); });
        } else {
          cv_.wait(lock, [this] { return HasWork(); });
        }
        --idle_;
        if (stopped_) return;
        if (!woken || ready_.empty()) {
          // Idle too long: this thread ends; the next Post (or Stop) joins it.
          Retire();
          return;
        }
        task = std::move(ready_.front());
        ready_.pop_front();
        ++taken_;
      }
      RunGuarded("a task on the library's thread pool", task);
    }
  }

  const size_t max_threads_;
  const bool elastic_;
  const bool grow_when_stalled_;
  std::mutex mu_;
  std::condition_variable cv_;  // a task was queued, or the pool stopped
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::function<void()>> ready_ ABSL_GUARDED_BY(mu_);
  std::map<std::thread::id, std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> finished_ ABSL_GUARDED_BY(mu_);  // ended, not joined yet
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;                    // threads waiting for a task
  uint64_t taken_ ABSL_GUARDED_BY(mu_) = 0;                 // tasks taken by a thread, ever
  bool monitoring_ ABSL_GUARDED_BY(mu_) = false;            // a Monitor thread runs
  std::condition_variable monitor_cv_;                      // the pool stopped
};

struct PoolHolder {
  std::shared_ptr<ThreadPool> pool;
  ~PoolHolder() { pool->Stop(); }
};

ThreadPool& Pool() {
  static const auto* const pool = new std::shared_ptr<ThreadPool>(std::make_shared<ThreadPool>(
      std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 8), /*elastic=*/false));
  // Destroyed at exit, in reverse order of construction: joins the threads.
  static const PoolHolder stop_at_exit{*pool};
  return **pool;
}

// Blocking calls (Offload) in flight at once, at most; more wait for a thread. Backend calls are
// bounded by their contexts, so a hard limit holds even when a server does not answer.
constexpr size_t kMaxBlockingThreads = 8;

ThreadPool& Blocking() {
  static const auto* const pool = new std::shared_ptr<ThreadPool>(
      std::make_shared<ThreadPool>(kMaxBlockingThreads, /*elastic=*/true));
  static const PoolHolder stop_at_exit{*pool};
  return **pool;
}

// Calls into user code that may block for long (observers, WatchStoreManager functions): the
// pool's usual threads, beyond which it grows only when every thread is held (see ThreadPool).
constexpr size_t kCallbackThreads = 8;

ThreadPool& Callbacks() {
  static const auto* const pool = new std::shared_ptr<ThreadPool>(
      std::make_shared<ThreadPool>(kCallbackThreads, /*elastic=*/true, /*grow_when_stalled=*/true));
  static const PoolHolder stop_at_exit{*pool};
  return **pool;
}

thread_local const StrandState* current_strand = nullptr;

}  // namespace

struct StrandState : std::enable_shared_from_this<StrandState> {
  // A strand hands its thread back after this many tasks in a row, so that a busy strand does
  // not starve the others on the pool.
  static constexpr int kTasksPerTurn = 64;

  explicit StrandState(std::shared_ptr<Executor> executor) : executor(std::move(executor)) {}

  void Post(std::function<void()> task) {
    {
      std::unique_lock<std::mutex> lock(mu);
      tasks.push_back(std::move(task));
      if (scheduled) return;
      scheduled = true;
    }
    Schedule();
  }

  void Schedule() {
    executor->Post([self = shared_from_this()] { self->RunTurn(); });
  }

  void RunTurn() {
    const StrandState* outer = current_strand;
    current_strand = this;
    for (int i = 0; i < kTasksPerTurn; ++i) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu);
        if (tasks.empty()) {
          scheduled = false;
          current_strand = outer;
          return;
        }
        task = std::move(tasks.front());
        tasks.pop_front();
      }
      // Caught here, not by the pool: a task that threw must not end the turn with `scheduled`
      // still set, which would stop the strand for good.
      RunGuarded("a task on a strand", task);
    }
    current_strand = outer;
    Schedule();  // more may be queued: let other work run first
  }

  const std::shared_ptr<Executor> executor;
  std::mutex mu;
  std::deque<std::function<void()>> tasks ABSL_GUARDED_BY(mu);
  bool scheduled ABSL_GUARDED_BY(mu) = false;  // a turn is posted or running
};

struct ManualExecutorState {
  mutable std::mutex mu;
  std::deque<std::function<void()>> tasks ABSL_GUARDED_BY(mu);
};

}  // namespace internal

std::shared_ptr<Executor> DefaultExecutor() {
  internal::ThreadPool& pool = internal::Pool();
  // An aliasing pointer: the pool is never destroyed.
  return std::shared_ptr<Executor>(std::shared_ptr<Executor>(), &pool);
}

size_t DefaultExecutorThreads() { return internal::Pool().max_threads(); }

namespace internal {

Executor& BlockingPool() { return Blocking(); }

std::shared_ptr<Executor> SharedBlockingPool() {
  // An aliasing pointer: the pool is never destroyed.
  return std::shared_ptr<Executor>(std::shared_ptr<Executor>(), &Blocking());
}

size_t BlockingPoolThreads() { return Blocking().max_threads(); }

Executor& CallbackPool() { return Callbacks(); }

size_t CallbackPoolThreads() { return Callbacks().max_threads(); }

}  // namespace internal

Strand::Strand(std::shared_ptr<Executor> executor)
    : state_(std::make_shared<internal::StrandState>(executor ? std::move(executor)
                                                              : DefaultExecutor())) {}

Strand::~Strand() = default;

void Strand::Post(std::function<void()> task) { state_->Post(std::move(task)); }

bool Strand::RunningInThisThread() const { return internal::current_strand == state_.get(); }

ManualExecutor::ManualExecutor() : state_(std::make_shared<internal::ManualExecutorState>()) {}

ManualExecutor::~ManualExecutor() {
  std::deque<std::function<void()>> dropped;
  std::unique_lock<std::mutex> lock(state_->mu);
  dropped.swap(state_->tasks);
}

void ManualExecutor::Post(std::function<void()> task) {
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->tasks.push_back(std::move(task));
}

bool ManualExecutor::RunOne() {
  std::function<void()> task;
  {
    std::unique_lock<std::mutex> lock(state_->mu);
    if (state_->tasks.empty()) return false;
    task = std::move(state_->tasks.front());
    state_->tasks.pop_front();
  }
  task();
  return true;
}

size_t ManualExecutor::RunUntilIdle() {
  size_t ran = 0;
  while (RunOne()) ++ran;
  return ran;
}

size_t ManualExecutor::Pending() const {
  std::unique_lock<std::mutex> lock(state_->mu);
  return state_->tasks.size();
}

}  // namespace kvstore

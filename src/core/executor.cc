#include "kvstore/executor.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
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
#include "core/thread_name.h"
#include "kvstore/clock.h"
#include "kvstore/mutex.h"

namespace kvstore {
namespace internal {
namespace {

// A pool of threads. Never destroyed, so that tasks may still be posted from static destructors;
// at exit its threads are stopped and joined (StopAtExit), and later tasks are destroyed unrun.
// A fixed pool starts all its threads on first use. An elastic one starts a thread only when a
// task finds none idle (up to `max_threads`, its usual threads), and a thread idle for
// kIdleLinger ends. Beyond `max_threads`, tasks wait; in a pool that may grow when stalled (up
// to `stalled_max_threads` threads), only until no thread took a task for `stall_grace`: then
// every thread is held by a call that blocks (an observer waiting for its reader, a backend call
// to a server that does not answer) and the pool adds one, so that calls which block for long
// delay only themselves, never the calls queued behind them. A check on the timer thread, due
// every `stall_grace` only while tasks wait at the limit, watches for that. So a pool runs few
// threads while its calls return, and more only while calls block.
class ThreadPool final : public Executor {
 public:
  // `name` names the pool's threads (see NameThisThread).
  ThreadPool(const char* name, size_t max_threads, bool elastic, size_t stalled_max_threads = 0,
             std::chrono::milliseconds stall_grace = std::chrono::milliseconds(20))
      : name_(name),
        max_threads_(max_threads),
        elastic_(elastic),
        stalled_max_threads_(stalled_max_threads),
        stall_grace_(stall_grace) {}

  void Post(std::function<void()> task) override {
    std::vector<std::thread> finished;
    {
      MutexLock lock(mu_);
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
          } else if (threads_.size() < stalled_max_threads_ && !monitoring_) {
            monitoring_ = true;
            CheckStallLater();
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
      MutexLock lock(mu_);
      stopped_ = true;
      cv_.notify_all();
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

  // Moves the calling pool thread, which is about to return, to finished_.
  void Retire() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto self = threads_.find(std::this_thread::get_id());
    if (self != threads_.end()) {
      finished_.push_back(std::move(self->second));
      threads_.erase(self);
    }
  }

  // An elastic pool's stall check, on the process's timer thread (no thread of its own): while
  // tasks wait, adds a thread whenever none was taken for `stall_grace`. Ends once no task waits.
  void CheckStallLater() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // The pool is never destroyed: `this` outlives the timer.
    SystemClock()->AfterFunc(stall_grace_, [this, seen = taken_] { CheckStall(seen); });
  }

  void CheckStall(uint64_t seen) {
    std::vector<std::thread> finished;
    {
      MutexLock lock(mu_);
      if (stopped_) return;
      if (ready_.empty()) {
        monitoring_ = false;
        return;
      }
      if (taken_ == seen && idle_ == 0 && threads_.size() < stalled_max_threads_) StartThread();
      if (threads_.size() >= stalled_max_threads_) {
        // Grown to the limit: nothing to add until a thread ends, which it does only once no
        // task waits; the next Post that finds the pool busy below the limit watches again.
        // (With etcd down, every thread of the blocking pool waits for its call's deadline and
        // this check would otherwise wake the timer thread every stall_grace meanwhile.)
        monitoring_ = false;
      } else {
        CheckStallLater();
      }
      finished.swap(finished_);
    }
    for (std::thread& thread : finished) thread.join();
  }

  void StartThread() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::thread thread([this] { Loop(); });
    const std::thread::id id = thread.get_id();
    threads_.emplace(id, std::move(thread));
  }

  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_ || !ready_.empty(); }

  void Loop() {
    NameThisThread(name_);
    while (true) {
      std::function<void()> task;
      {
        MutexLock lock(mu_);
        ++idle_;
        bool woken = true;
        if (elastic_) {
          woken = cv_.wait_for(lock, kIdleLinger,
                               [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return HasWork(); });
        } else {
          cv_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return HasWork(); });
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

  const char* const name_;
  const size_t max_threads_;
  const bool elastic_;
  const size_t stalled_max_threads_;  // above max_threads_: grows when stalled
  const std::chrono::milliseconds stall_grace_;
  Mutex mu_;
  CondVar cv_;  // a task was queued, or the pool stopped
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::function<void()>> ready_ ABSL_GUARDED_BY(mu_);
  std::map<std::thread::id, std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> finished_ ABSL_GUARDED_BY(mu_);  // ended, not joined yet
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;                    // threads waiting for a task
  uint64_t taken_ ABSL_GUARDED_BY(mu_) = 0;                 // tasks taken by a thread, ever
  bool monitoring_ ABSL_GUARDED_BY(mu_) = false;            // a CheckStall is scheduled
};

struct PoolHolder {
  std::shared_ptr<ThreadPool> pool;
  ~PoolHolder() { pool->Stop(); }
};

ThreadPool& Pool() {
  static const auto* const pool = new std::shared_ptr<ThreadPool>(std::make_shared<ThreadPool>(
      "kv-default", std::clamp<size_t>(std::thread::hardware_concurrency(), 2, 8),
      /*elastic=*/false));
  // Destroyed at exit, in reverse order of construction: joins the threads.
  static const PoolHolder stop_at_exit{*pool};
  return **pool;
}

// Blocking calls (Offload, the etcd backends' retries and logins): the pool's usual threads,
// enough while calls return (to an embedded store, or to a server that answers). While calls
// block (a server that does not answer holds each until its context ends), it grows up to
// kMaxBlockingThreads in flight, beyond which calls wait: backend calls are bounded by their
// contexts, so a hard limit holds even when no server answers.
// A backend call that takes longer than kBlockingStallGrace is one that blocks: a loaded etcd
// answers within it, so that a busy pool does not grow for calls that return.
constexpr size_t kBlockingThreads = 2;
constexpr size_t kMaxBlockingThreads = 8;
constexpr auto kBlockingStallGrace = std::chrono::milliseconds(200);

ThreadPool& Blocking() {
  static const auto* const pool = new std::shared_ptr<ThreadPool>(std::make_shared<ThreadPool>(
      "kv-blocking", kBlockingThreads, /*elastic=*/true, kMaxBlockingThreads, kBlockingStallGrace));
  static const PoolHolder stop_at_exit{*pool};
  return **pool;
}

// Calls into user code that may block for as long as it likes (observers, WatchStoreManager
// functions): the pool's usual threads, beyond which it grows only when every thread is held
// (see ThreadPool), without limit: a call that never returns may hold a thread, never the others.
constexpr size_t kCallbackThreads = 2;

ThreadPool& Callbacks() {
  static const auto* const pool = new std::shared_ptr<ThreadPool>(
      std::make_shared<ThreadPool>("kv-callback", kCallbackThreads, /*elastic=*/true,
                                   /*stalled_max_threads=*/SIZE_MAX));
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
      MutexLock lock(mu);
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
        MutexLock lock(mu);
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
  Mutex mu;
  std::deque<std::function<void()>> tasks ABSL_GUARDED_BY(mu);
  bool scheduled ABSL_GUARDED_BY(mu) = false;  // a turn is posted or running
};

struct ManualExecutorState {
  mutable Mutex mu;
  CondVar posted;  // signals a task queued (for RunOneOrWait)
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

size_t BlockingPoolThreads() { return kMaxBlockingThreads; }

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
  MutexLock lock(state_->mu);
  dropped.swap(state_->tasks);
}

void ManualExecutor::Post(std::function<void()> task) {
  MutexLock lock(state_->mu);
  state_->tasks.push_back(std::move(task));
  state_->posted.notify_all();
}

bool ManualExecutor::RunOne() {
  std::function<void()> task;
  {
    MutexLock lock(state_->mu);
    if (state_->tasks.empty()) return false;
    task = std::move(state_->tasks.front());
    state_->tasks.pop_front();
  }
  task();
  return true;
}

bool ManualExecutor::RunOneOrWait(std::chrono::steady_clock::time_point deadline) {
  std::function<void()> task;
  {
    MutexLock lock(state_->mu);
    if (!state_->posted.wait_until(lock, deadline,
                                   [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) {
                                     return !state_->tasks.empty();
                                   })) {
      return false;
    }
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
  MutexLock lock(state_->mu);
  return state_->tasks.size();
}

}  // namespace kvstore

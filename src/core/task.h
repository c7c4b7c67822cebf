// Coroutines on the executor: how the library writes a component's loop (retry with back-off,
// wait for a watch event, wait for a canary) as straight-line code that holds no thread while it
// waits. A Task is a lazily started coroutine; Spawn runs one on an executor (usually a Strand,
// so that one component's coroutines never run at once). Every wait (Sleep, NextEvents, Offload)
// resumes the coroutine through its executor, never on the thread that ended the wait (a timer
// thread, gRPC's completion thread, a producer), so what runs after a co_await is ordered with
// everything else on that strand.
//
// Private to the library.
#ifndef KVSTORE_CORE_TASK_H_
#define KVSTORE_CORE_TASK_H_

#include <atomic>
#include <coroutine>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/executor.h"
#include "kvstore/mutex.h"
#include "kvstore/workqueue/queue.h"

namespace kvstore::internal {

template <typename T>
class Task;

// The id of a Context callback that an awaiter registers while suspending and removes when it
// resumes, possibly on another thread.
struct CallbackId {
  Mutex mu;
  uint64_t id ABSL_GUARDED_BY(mu) = 0;
};

namespace task_detail {

// What every Task's promise has: the coroutine awaiting it, resumed when it finishes.
struct PromiseBase {
  std::coroutine_handle<> continuation;
  std::exception_ptr error;

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> done) noexcept {
      std::coroutine_handle<> next = done.promise().continuation;
      return next ? next : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() { error = std::current_exception(); }
};

template <typename T>
struct Promise : PromiseBase {
  std::optional<T> value;
  Task<T> get_return_object();
  template <typename U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T Result() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct Promise<void> : PromiseBase {
  Task<void> get_return_object();
  void return_void() {}
  void Result() {
    if (error) std::rethrow_exception(error);
  }
};

}  // namespace task_detail

// A coroutine returning T, started when awaited (or by Spawn), destroyed with the Task.
template <typename T = void>
class [[nodiscard]] Task {
 public:
  using promise_type = task_detail::Promise<T>;
  using Handle = std::coroutine_handle<promise_type>;

  Task() = default;
  explicit Task(Handle handle) : handle_(handle) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (handle_) handle_.destroy();
  }

  // Awaiting runs the task on the awaiting coroutine's thread until its first suspension.
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    handle_.promise().continuation = awaiting;
    return handle_;
  }
  T await_resume() { return handle_.promise().Result(); }

 private:
  Handle handle_;
};

template <typename T>
Task<T> task_detail::Promise<T>::get_return_object() {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}

inline Task<void> task_detail::Promise<void>::get_return_object() {
  return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}

// Runs `task` on `executor` (it starts in a task posted there), then calls `done` (may be null)
// where it finished. The coroutine's frame is destroyed right after. An exception escaping the
// task is logged and ends it.
void Spawn(Executor& executor, Task<void> task, std::function<void()> done = nullptr);

// One wake-up of a suspended coroutine from any of several sources (a timer, a context, a
// watcher): the first to call Wake resumes it on its executor, later ones do nothing.
class Waker : public std::enable_shared_from_this<Waker> {
 public:
  Waker(Executor& executor, std::coroutine_handle<> handle)
      : executor_(executor), handle_(handle) {}
  void Wake() {
    if (woken_.exchange(true)) return;
    std::coroutine_handle<> handle = handle_;
    executor_.Post([handle] { handle.resume(); });
  }

 private:
  Executor& executor_;
  const std::coroutine_handle<> handle_;
  std::atomic<bool> woken_{false};
};

// What Sleep awaits: the clock's timer or the end of the context, whichever first.
class SleepAwaiter {
 public:
  SleepAwaiter(Executor& executor, const Clock& clock, Clock::duration d, const Context& ctx)
      : executor_(executor), clock_(clock), d_(d), ctx_(ctx) {}
  bool await_ready() const { return ctx_.Done(); }
  void await_suspend(std::coroutine_handle<> handle);
  bool await_resume();

 private:
  // What await_suspend registered; its mutex is held while it registers, so that a wake-up
  // that resumes the coroutine at once on another thread finds them registered.
  struct Registered {
    Mutex mu;
    Timer timer ABSL_GUARDED_BY(mu);
    uint64_t ctx_callback ABSL_GUARDED_BY(mu) = 0;
  };
  Executor& executor_;
  const Clock& clock_;
  const Clock::duration d_;
  const Context ctx_;
  std::shared_ptr<Registered> registered_ = std::make_shared<Registered>();
};

// Waits until `d` has passed on `clock` or `ctx` is done; true when the time passed (false when
// `ctx` is done), as SleepOnClock. Resumes on `executor`. REQUIRES: `clock` outlives the wait.
Task<bool> Sleep(Executor& executor, const Clock& clock, Clock::duration d, Context ctx);

// Waits until `ctx` is done (at once when it is); resumes on `executor`.
Task<void> UntilDone(Executor& executor, Context ctx);

// Waits until `watcher` has events (appended to `*events`, every one buffered) and returns true;
// false, appending nothing, once it is closed and drained, stopped, or `ctx` is done: a
// non-blocking Watcher::NextBatch. Resumes on `executor`.
Task<bool> NextEvents(Executor& executor, Watcher& watcher, const Context& ctx,
                      std::deque<KeyValueEvent>* events);

// Runs `fn` (a blocking call: a backend's Get, Update, ...) on `pool` and returns its result,
// resuming on `executor`. REQUIRES: `fn` returns a value (not void). The blocking call holds a
// thread of `pool` meanwhile, bounded by its own context; the awaiting coroutine holds none.
// What `fn` throws is rethrown in the awaiting coroutine (which is resumed all the same), so that
// it never stays suspended for good behind a pool thread that caught the exception.
template <typename Fn>
auto Offload(Executor& pool, Executor& executor, Fn fn) -> Task<std::invoke_result_t<Fn&>> {
  using Result = std::invoke_result_t<Fn&>;
  struct Awaiter {
    Executor& pool;
    Executor& executor;
    Fn& fn;
    std::optional<Result> result;
    std::exception_ptr error;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> handle) {
      pool.Post([this, handle] {
        try {
          result.emplace(fn());
        } catch (...) {
          error = std::current_exception();
        }
        executor.Post([handle] { handle.resume(); });
      });
    }
    Result await_resume() {
      if (error) std::rethrow_exception(error);
      return std::move(*result);
    }
  };
  Awaiter awaiter{pool, executor, fn, std::nullopt, nullptr};  // named: see NextItems
  co_return co_await awaiter;
}

// The pool blocking calls are offloaded to, apart from DefaultExecutor's threads so that calls
// blocked on an unreachable server never hold the threads that deliver events and run timers.
// Elastic: it runs a thread per blocking call in flight, up to two while calls return, more only
// while calls block (none taken for 20 ms), up to BlockingPoolThreads() (further calls wait); a
// thread idle for two seconds ends, so an idle process runs none.
Executor& BlockingPool();
// The most threads BlockingPool() runs at once.
size_t BlockingPoolThreads();

// Runs the task `make` returns on the calling thread until it finished: the executor given to
// `make` runs every task posted to it on this thread, one at a time. For the library's blocking
// calls (WatchStore::Watch, SyncStore::Run) that run a coroutine and keep SPEC's promise that
// observers are called from the caller's thread. What the task throws is rethrown here.
void RunOnThisThread(const std::function<Task<void>(Executor& here)>& make);

// Waits for every task of `tasks`, each started on `executor` (so they run as their executor
// allows: concurrently on a pool, interleaved on a strand), then resumes on `executor`.
Task<void> WhenAll(Executor& executor, std::vector<Task<void>> tasks);

// Counts tasks still running, so that one coroutine can wait for others it spawned (what a
// thread's join was). Thread-safe.
class WaitGroup {
 public:
  // One more task to wait for.
  void Add() {
    MutexLock lock(mu_);
    ++running_;
  }
  // One task finished: resumes a Wait whose count reached zero.
  void Done() {
    std::coroutine_handle<> resume;
    Executor* executor = nullptr;
    {
      MutexLock lock(mu_);
      if (--running_ > 0 || !waiting_) return;
      resume = std::exchange(waiting_, {});
      executor = executor_;
    }
    executor->Post([resume] { resume.resume(); });
  }
  // Waits, resuming on `executor`, until every task added has finished. One waiter at a time.
  auto Wait(Executor& executor) {
    struct Awaiter {
      WaitGroup& group;
      Executor& executor;
      bool await_ready() {
        MutexLock lock(group.mu_);
        return group.running_ == 0;
      }
      bool await_suspend(std::coroutine_handle<> handle) {
        MutexLock lock(group.mu_);
        if (group.running_ == 0) return false;
        group.waiting_ = handle;
        group.executor_ = &executor;
        return true;
      }
      void await_resume() const noexcept {}
    };
    return Awaiter{*this, executor};
  }
  // Spawns `task` on `executor`, counted until it finished.
  void Spawn(Executor& executor, Task<void> task) {
    Add();
    internal::Spawn(executor, std::move(task), [this] { Done(); });
  }

 private:
  Mutex mu_;  // guards the fields below
  size_t running_ ABSL_GUARDED_BY(mu_) = 0;
  std::coroutine_handle<> waiting_ ABSL_GUARDED_BY(mu_);
  Executor* executor_ ABSL_GUARDED_BY(mu_) = nullptr;
};

// Waits until `queue` has waiting items and hands out up to `max_items` of them (each to be
// Done), as Queue::GetBatch does; empty once the queue is shut down and drained, or `ctx` is
// done. Holds no thread while it waits; resumes on `executor`.
template <typename T>
Task<std::vector<T>> NextItems(Executor& executor, workqueue::Queue<T>& queue, Context ctx,
                               size_t max_items) {
  struct Ready {
    Executor& executor;
    workqueue::Queue<T>& queue;
    const Context& ctx;
    std::shared_ptr<CallbackId> registered = std::make_shared<CallbackId>();
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> handle) {
      auto waker = std::make_shared<Waker>(executor, handle);
      MutexLock lock(registered->mu);
      queue.NotifyWhenReady([waker] { waker->Wake(); });
      registered->id = ctx.AddCallback([waker] { waker->Wake(); });
    }
    void await_resume() {
      uint64_t callback;
      {
        MutexLock lock(registered->mu);
        callback = registered->id;
      }
      ctx.RemoveCallback(callback);
    }
  };
  while (true) {
    if (ctx.Done()) co_return std::vector<T>{};
    bool ended = false;
    std::vector<T> items = queue.TryGetBatch(max_items, &ended);
    if (!items.empty() || ended) co_return items;
    // A named awaiter: GCC 12 destroys a braced temporary in a co_await expression twice.
    Ready ready{executor, queue, ctx};
    co_await ready;
  }
}

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_TASK_H_

#include "core/task.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <stdexcept>

#include "core/guarded.h"
#include "core/watcher_consumer.h"
#include "kvstore/mutex.h"

namespace kvstore::internal {
namespace {

// A coroutine that runs itself to the end and then frees its frame: what Spawn starts.
struct Detached {
  struct promise_type {
    Detached get_return_object() {
      return Detached{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::terminate(); }  // Run below lets nothing escape
  };
  std::coroutine_handle<promise_type> handle;
};

Detached Run(Task<void> task, std::function<void()> done) {
  try {
    co_await std::move(task);
  } catch (...) {
    ReportCurrentException("a library task");
  }
  if (done) done();
}

// Waits until the watcher is readable or `ctx` is done, whichever first; resumes on `executor`.
struct Readable {
  Executor& executor;
  Watcher& watcher;
  const Context& ctx;
  struct Registered {
    Mutex mu;
    uint64_t ctx_callback ABSL_GUARDED_BY(mu) = 0;
  };
  std::shared_ptr<Registered> registered = std::make_shared<Registered>();

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> handle) {
    auto waker = std::make_shared<Waker>(executor, handle);
    MutexLock lock(registered->mu);
    WatcherConsumer(watcher).NotifyWhenReadable([waker] { waker->Wake(); });
    registered->ctx_callback = ctx.AddCallback([waker] { waker->Wake(); });
  }
  void await_resume() {
    uint64_t callback;
    {
      MutexLock lock(registered->mu);
      callback = registered->ctx_callback;
    }
    ctx.RemoveCallback(callback);
  }
};

// Runs on the thread that calls Loop: RunOnThisThread's executor.
class ThisThread final : public Executor {
 public:
  void Post(std::function<void()> task) override {
    MutexLock lock(mu_);
    tasks_.push_back(std::move(task));
    cv_.notify_one();
  }
  void Finish() {
    MutexLock lock(mu_);
    finished_ = true;
    cv_.notify_one();
  }
  // Runs posted tasks until Finish was called and none is left.
  void Loop() {
    MutexLock lock(mu_);
    while (true) {
      cv_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return finished_ || !tasks_.empty();
      });
      if (tasks_.empty()) return;
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;
      lock.lock();
    }
  }

 private:
  Mutex mu_;  // guards the fields below
  CondVar cv_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

namespace {

// Awaits `task`, keeping what it throws for RunOnThisThread's caller.
Task<void> Catching(Task<void> task, std::exception_ptr* error) {
  try {
    co_await std::move(task);
  } catch (...) {
    *error = std::current_exception();
  }
}

}  // namespace

void RunOnThisThread(const std::function<Task<void>(Executor& here)>& make) {
  // Shared: a continuation may still post to it (and return) after Finish.
  auto here = std::make_shared<ThisThread>();
  std::exception_ptr error;
  Spawn(*here, Catching(make(*here), &error), [here] { here->Finish(); });
  here->Loop();
  // What an observer threw reaches the caller of the blocking call, as it did on its thread.
  if (error) std::rethrow_exception(error);
}

Task<void> WhenAll(Executor& executor, std::vector<Task<void>> tasks) {
  WaitGroup group;
  for (Task<void>& task : tasks) group.Spawn(executor, std::move(task));
  co_await group.Wait(executor);
}

void Spawn(Executor& executor, Task<void> task, std::function<void()> done) {
  Detached detached = Run(std::move(task), std::move(done));
  executor.Post([handle = detached.handle] { handle.resume(); });
}

Task<void> UntilDone(Executor& executor, Context ctx) {
  struct Ended {
    Executor& executor;
    const Context& ctx;
    std::shared_ptr<CallbackId> registered = std::make_shared<CallbackId>();
    bool await_ready() const { return ctx.Done(); }
    void await_suspend(std::coroutine_handle<> handle) {
      auto waker = std::make_shared<Waker>(executor, handle);
      MutexLock lock(registered->mu);
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
  Ended ended{executor, ctx};  // named: see NextEvents
  co_await ended;
}

Task<bool> Sleep(Executor& executor, const Clock& clock, Clock::duration d, Context ctx) {
  // Nothing to wait for: a timer due now on a FakeClock would fire only when time next moves.
  if (d <= Clock::duration::zero()) co_return !ctx.Done();
  SleepAwaiter sleep(executor, clock, d, ctx);  // named: see NextEvents
  co_return co_await sleep;
}

void SleepAwaiter::await_suspend(std::coroutine_handle<> handle) {
  auto waker = std::make_shared<Waker>(executor_, handle);
  MutexLock lock(registered_->mu);
  registered_->timer = clock_.AfterFunc(d_, [waker] { waker->Wake(); });
  registered_->ctx_callback = ctx_.AddCallback([waker] { waker->Wake(); });
}

bool SleepAwaiter::await_resume() {
  Timer timer;
  uint64_t callback = 0;
  {
    MutexLock lock(registered_->mu);
    timer = registered_->timer;
    callback = registered_->ctx_callback;
  }
  timer.Stop();
  ctx_.RemoveCallback(callback);
  return !ctx_.Done();
}

Task<bool> NextEvents(Executor& executor, Watcher& watcher, const Context& ctx,
                      std::deque<KeyValueEvent>* events) {
  WatcherConsumer consumer(watcher);
  while (true) {
    switch (consumer.TryTakeBatch(events)) {
      case WatcherConsumer::Take::kTook:
        co_return true;
      case WatcherConsumer::Take::kEnded:
        co_return false;
      case WatcherConsumer::Take::kEmpty:
        break;
    }
    if (ctx.Done()) co_return false;
    // A named awaiter: GCC 12 destroys a braced temporary in a co_await expression twice.
    Readable readable{executor, watcher, ctx};
    co_await readable;
  }
}

}  // namespace kvstore::internal

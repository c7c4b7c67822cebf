// Where the library's work runs: tasks on an executor with a fixed number of threads, serialized
// per component by strands, instead of threads owned by each component. A test replaces the
// executor with a ManualExecutor and runs every task itself, one at a time, on its own thread.
#ifndef KVSTORE_EXECUTOR_H_
#define KVSTORE_EXECUTOR_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

#include "kvstore/export.h"

namespace kvstore {

namespace internal {
struct StrandState;
struct ManualExecutorState;
}  // namespace internal

// Runs tasks. Thread-safe.
class KVSTORE_EXPORT Executor {
 public:
  virtual ~Executor() = default;
  // Runs `task` later, never on the caller's stack. A task must not block for long: a blocked
  // task holds one of a fixed number of threads. An executor that has stopped (at process exit)
  // destroys the task without running it.
  virtual void Post(std::function<void()> task) = 0;
};

// The process's executor: a pool of a fixed number of threads (the machine's hardware threads,
// at least 2 and at most 8), started on first use and joined at exit. Never null.
KVSTORE_EXPORT std::shared_ptr<Executor> DefaultExecutor();
// The number of threads DefaultExecutor() runs.
KVSTORE_EXPORT size_t DefaultExecutorThreads();

// A serial queue on an executor: tasks posted to a strand run one at a time, in the order they
// were posted, each on some thread of the underlying executor. What one component does is posted
// to its strand, so its state needs no lock against itself, and a component costs no thread.
// Destroying the strand does not cancel tasks already posted: they still run, in order.
// Thread-safe.
class KVSTORE_EXPORT Strand final : public Executor {
 public:
  // `executor` null: DefaultExecutor().
  explicit Strand(std::shared_ptr<Executor> executor = nullptr);
  Strand(const Strand&) = delete;
  Strand& operator=(const Strand&) = delete;
  ~Strand() override;

  void Post(std::function<void()> task) override;
  // True while the calling thread runs a task of this strand.
  bool RunningInThisThread() const;

 private:
  std::shared_ptr<internal::StrandState> state_;
};

// An executor for deterministic tests: Post only queues; the test runs the tasks on its own
// thread with RunOne or RunUntilIdle, one at a time, in the order they were posted. With a
// FakeClock for time, a test drives a component step by step without real threads or sleeps.
// Thread-safe (tasks may be posted from any thread).
class KVSTORE_EXPORT ManualExecutor final : public Executor {
 public:
  ManualExecutor();
  ManualExecutor(const ManualExecutor&) = delete;
  ManualExecutor& operator=(const ManualExecutor&) = delete;
  // Destroys the tasks still queued without running them.
  ~ManualExecutor() override;

  void Post(std::function<void()> task) override;
  // Runs the oldest queued task; false when none was queued.
  bool RunOne();
  // Runs the oldest queued task, first waiting (in real time) until one is posted, from another
  // thread, or until `deadline`; false when none came by then. For a test whose other thread
  // makes a blocking call that waits for this executor's tasks (SharedStore::Join): this thread
  // runs them as they come, without polling.
  bool RunOneOrWait(std::chrono::steady_clock::time_point deadline);
  // Runs tasks until none is queued (including those the tasks posted); returns how many ran.
  // REQUIRES: the tasks do not post new tasks forever.
  size_t RunUntilIdle();
  // Tasks queued and not run yet.
  size_t Pending() const;

 private:
  std::shared_ptr<internal::ManualExecutorState> state_;
};

}  // namespace kvstore

#endif  // KVSTORE_EXECUTOR_H_

// No exception escapes a thread of the library: what a task, a strand's task or a timer's function
// throws is logged and counted on the thread that ran it, and that thread (and the strand) goes on
// with the next work.
#include "core/guarded.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/blocking_pool.h"
#include "core/lease_observers.h"
#include "core/task.h"
#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/spdlog.h"
#include "tests/support/eventually.h"

namespace kvstore::internal {
namespace {

using kvstore::testing::Eventually;

// Everything spdlog's default logger writes in this process, from the first call on. Installed
// once and never replaced: a pool thread may still be inside a logging call when a test ends.
class StringSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string Text() {
    std::lock_guard<std::mutex> lock(mutex_);  // base_sink's, held by sink_it_ too
    return text_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    text_.append(formatted.data(), formatted.size());
  }
  void flush_() override {}

 private:
  std::string text_;  // guarded by base_sink's mutex_
};

StringSink& Logs() {
  static StringSink* const sink = [] {
    auto shared = std::make_shared<StringSink>();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", shared));
    return shared.get();  // the logger keeps it alive, and the registry keeps the logger
  }();
  return *sink;
}

// Posts a task that throws `what`, then one that records it ran, to `executor`; checks that the
// second runs, that the exception was counted and that it was logged.
void ExpectCaughtAndGoesOn(Executor& executor, const std::string& what) {
  StringSink& logs = Logs();
  const uint64_t before = CaughtExceptions();
  std::atomic<bool> next_ran{false};
  executor.Post([what] { throw std::runtime_error(what); });
  executor.Post([&] { next_ran = true; });
  EXPECT_TRUE(Eventually([&] { return next_ran.load(); }));
  EXPECT_TRUE(Eventually([&] { return CaughtExceptions() > before; }));
  EXPECT_TRUE(Eventually([&] { return logs.Text().find(what) != std::string::npos; }))
      << logs.Text();
  EXPECT_NE(logs.Text().find("exception escaped"), std::string::npos) << logs.Text();
}

TEST(GuardedTest, RunGuardedCatchesLogsAndCounts) {
  StringSink& logs = Logs();
  const uint64_t before = CaughtExceptions();
  RunGuarded("a test", [] { throw std::logic_error("boom-direct"); });
  RunGuarded("a test", [] { throw 42; });  // not a std::exception
  RunGuarded("a test", [] {});
  EXPECT_EQ(CaughtExceptions(), before + 2);
  const std::string text = logs.Text();
  EXPECT_NE(text.find("exception escaped a test: boom-direct"), std::string::npos) << text;
  EXPECT_NE(text.find("not derived from std::exception"), std::string::npos) << text;
}

TEST(GuardedTest, DefaultExecutorTaskThatThrows) {
  ExpectCaughtAndGoesOn(*DefaultExecutor(), "boom-pool");
}

TEST(GuardedTest, StrandGoesOnAfterATaskThatThrows) {
  // Without the catch inside the strand's turn, the strand would stay marked as scheduled and
  // never run the second task.
  Strand strand;
  ExpectCaughtAndGoesOn(strand, "boom-strand");
}

TEST(GuardedTest, BlockingAndCallbackPoolTasksThatThrow) {
  ExpectCaughtAndGoesOn(BlockingPool(), "boom-blocking");
  ExpectCaughtAndGoesOn(CallbackPool(), "boom-callback");
}

TEST(GuardedTest, TimerFunctionThatThrows) {
  StringSink& logs = Logs();
  const uint64_t before = CaughtExceptions();
  std::atomic<bool> later_ran{false};
  std::shared_ptr<Clock> clock = SystemClock();
  Timer first = clock->AfterFunc(std::chrono::milliseconds(1),
                                 [] { throw std::runtime_error("boom-timer"); });
  Timer second = clock->AfterFunc(std::chrono::milliseconds(5), [&] { later_ran = true; });
  EXPECT_TRUE(Eventually([&] { return later_ran.load(); }));
  EXPECT_TRUE(Eventually([&] { return CaughtExceptions() > before; }));
  EXPECT_TRUE(Eventually([&] { return logs.Text().find("boom-timer") != std::string::npos; }))
      << logs.Text();
}

Task<void> Throwing() {
  throw std::runtime_error("boom-coroutine");
  co_return;
}

TEST(GuardedTest, SpawnedTaskThatThrowsStillCallsDone) {
  StringSink& logs = Logs();
  const uint64_t before = CaughtExceptions();
  std::atomic<bool> done{false};
  Spawn(*DefaultExecutor(), Throwing(), [&] { done = true; });
  EXPECT_TRUE(Eventually([&] { return done.load(); }));
  EXPECT_EQ(CaughtExceptions(), before + 1);
  EXPECT_NE(logs.Text().find("exception escaped a library task: boom-coroutine"), std::string::npos)
      << logs.Text();
}

// A blocking call offloaded to a pool that throws: the exception reaches the awaiting coroutine,
// which is resumed (before, the pool thread caught and logged it and the coroutine stayed
// suspended for good: a SyncStore::Run whose synced callback threw never returned).
Task<void> OffloadThatThrows(Executor& here, std::string* caught) {
  try {
    co_await Offload(BlockingPool(), here,
                     []() -> bool { throw std::runtime_error("boom-offload"); });
  } catch (const std::runtime_error& error) {
    *caught = error.what();
  }
  // The coroutine goes on: a second offload returns its value.
  const int value = co_await Offload(BlockingPool(), here, [] { return 7; });
  *caught += " then " + std::to_string(value);
}

TEST(GuardedTest, OffloadedCallThatThrowsResumesTheAwaitingCoroutine) {
  std::string caught;
  RunOnThisThread([&](Executor& here) { return OffloadThatThrows(here, &caught); });
  EXPECT_EQ(caught, "boom-offload then 7");
}

Task<void> OffloadThatThrowsUncaught(Executor& here) {
  co_await Offload(CallbackPool(), here, []() -> bool { throw std::logic_error("boom-rethrown"); });
}

// Uncaught in the coroutine, it reaches the caller of the blocking call (as an exception from a
// WatchStore observer does), on the caller's thread.
TEST(GuardedTest, OffloadedCallThatThrowsReachesTheBlockingCallsCaller) {
  EXPECT_THROW(RunOnThisThread([](Executor& here) { return OffloadThatThrowsUncaught(here); }),
               std::logic_error);
}

// A lease-expired observer that throws is caught where the observers are dispatched: the other
// observers, and the keys after it, are still reported (before, the exception skipped them all
// and reached whichever call found the lease expired).
TEST(GuardedTest, LeaseExpiredObserverThatThrowsStopsNoOtherObserver) {
  StringSink& logs = Logs();
  LeaseObservers observers;
  std::vector<std::string> seen;
  observers.Register("a/", [](std::string_view) { throw std::runtime_error("boom-lease"); });
  observers.Register("b/", [&](std::string_view key) { seen.emplace_back(key); });
  const uint64_t before = CaughtExceptions();
  observers.Dispatch({"a/1", "b/1", "a/2", "b/2"});
  EXPECT_EQ(seen, (std::vector<std::string>{"b/1", "b/2"}));
  EXPECT_EQ(CaughtExceptions(), before + 2);
  EXPECT_NE(logs.Text().find("exception escaped a lease-expired observer: boom-lease"),
            std::string::npos)
      << logs.Text();
}

}  // namespace
}  // namespace kvstore::internal

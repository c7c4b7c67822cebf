#include "kvstore/store/watch_store_manager.h"

#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/task.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvstore/executor.h"
#include "store/async_stores.h"
#include "tests/support/eventually.h"
#include "tests/support/fake_watch_store_backend.h"
#include "tests/support/scripted_watch_store_backend.h"

namespace kvstore::store {
namespace {

using ::kvstore::testing::FakeWatchStoreBackend;
using ::kvstore::testing::kEventuallyTimeout;
using ::kvstore::testing::ScriptedWatchStoreBackend;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

KeyValueEvent Create(std::string key) {
  return KeyValueEvent{EventType::kCreate, std::move(key), ""};
}
KeyValueEvent ListDone() { return KeyValueEvent{EventType::kListDone, "", ""}; }

// Records which registered functions started.
class StartLog {
 public:
  // A function that records its start, then runs until its context is done (on a thread).
  WSMFunc Function(std::string name) {
    return [this, name](const Context& ctx) {
      Record(name);
      ctx.Wait();
    };
  }
  // A function that records its start and returns: for a ManualExecutor, whose task must not
  // block the test's thread.
  WSMFunc Returning(std::string name) {
    return [this, name](const Context&) { Record(name); };
  }
  std::vector<std::string> Started() const {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  // Waits until `n` functions started.
  bool WaitForStarted(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kEventuallyTimeout, [&] { return started_.size() >= n; });
  }

 private:
  void Record(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    started_.push_back(name);
    cv_.notify_all();
  }
  mutable std::mutex mu_;  // guards started_
  std::condition_variable cv_;
  std::vector<std::string> started_;
};

// Runs the manager's blocking Run on a thread; Cancel() cancels its context.
class ManagerRun {
 public:
  explicit ManagerRun(WatchStoreManager& manager) {
    std::tie(ctx_, cancel_) = WithCancel(Context::Background());
    auto done = std::make_shared<std::promise<void>>();
    returned_ = done->get_future();
    thread_ = std::thread([&manager, ctx = ctx_, done] {
      manager.Run(ctx);
      done->set_value();
    });
  }
  ~ManagerRun() {
    cancel_();
    thread_.join();
  }
  // Cancels and reports whether Run returned (within a generous bound).
  bool CancelAndWait() {
    cancel_();
    return returned_.wait_for(kEventuallyTimeout) == std::future_status::ready;
  }
  bool Returned() {
    return returned_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }

 private:
  Context ctx_;
  CancelFunc cancel_;
  std::future<void> returned_;
  std::thread thread_;
};

// RunAsync on the test's thread: the manager on `executor_`, the functions on `functions_`. The
// fixture owns the manager and the backend, so that TearDown ends the run before they go.
class WatchStoreManagerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    cancel_();
    Settle();
    EXPECT_TRUE(Returned());
  }
  internal::AsyncWatchStoreManager& Immediate() {
    manager_ = internal::NewAsyncWatchStoreManagerImmediate("foo");
    return *manager_;
  }
  internal::AsyncWatchStoreManager& Sync(std::vector<KeyValueEvent> script) {
    backend_ = std::make_shared<ScriptedWatchStoreBackend>(std::move(script));
    manager_ = internal::NewAsyncWatchStoreManagerSync(backend_, "foo");
    return *manager_;
  }
  void Start() {
    kvstore::internal::Spawn(executor_, manager_->RunAsync(executor_, ctx_, &functions_),
                             [returned = returned_] { *returned = true; });
  }
  void Settle() {
    while (executor_.RunUntilIdle() + functions_.RunUntilIdle() > 0) {
    }
  }
  bool Returned() const { return *returned_; }

  ManualExecutor executor_;
  ManualExecutor functions_;
  StartLog log_;
  Context ctx_;
  CancelFunc cancel_;
  std::shared_ptr<bool> returned_ = std::make_shared<bool>(false);
  std::shared_ptr<ScriptedWatchStoreBackend> backend_;
  std::unique_ptr<internal::AsyncWatchStoreManager> manager_;

  void SetUp() override { std::tie(ctx_, cancel_) = WithCancel(Context::Background()); }
};

TEST_F(WatchStoreManagerTest, ImmediateStartsEveryRegisteredFunctionAndWaitsForThem) {
  auto& manager = Immediate();
  manager.Register("bar", log_.Returning("bar"));
  manager.Register("bax", log_.Returning("baz"));
  manager.Register("qux", log_.Returning("qux"));
  Start();
  executor_.RunUntilIdle();
  EXPECT_EQ(functions_.Pending(), 3u);  // each function posted, none run yet
  EXPECT_THAT(log_.Started(), IsEmpty());
  cancel_();
  executor_.RunUntilIdle();
  EXPECT_FALSE(Returned());  // the functions did not return yet
  functions_.RunUntilIdle();
  EXPECT_THAT(log_.Started(), UnorderedElementsAre("bar", "baz", "qux"));
  executor_.RunUntilIdle();
  EXPECT_TRUE(Returned());
}

TEST_F(WatchStoreManagerTest, ImmediateReturnsOnlyWhenContextIsDone) {
  auto& manager = Immediate();
  manager.Register("bar", log_.Returning("bar"));
  Start();
  Settle();
  EXPECT_THAT(log_.Started(), ElementsAre("bar"));
  EXPECT_FALSE(Returned());
  cancel_();
  Settle();
  EXPECT_TRUE(Returned());
}

// The blocking Run, with functions on threads of their own that run until the context ends.
TEST(WatchStoreManagerBlockingTest, ImmediateRunStartsEveryFunctionOnItsOwnThread) {
  StartLog log;
  auto manager = NewWatchStoreManagerImmediate("foo");
  manager->Register("bar", log.Function("bar"));
  manager->Register("bax", log.Function("baz"));
  manager->Register("qux", log.Function("qux"));
  ManagerRun run(*manager);
  ASSERT_TRUE(log.WaitForStarted(3));  // all three block in their context at once
  EXPECT_THAT(log.Started(), UnorderedElementsAre("bar", "baz", "qux"));
  EXPECT_FALSE(run.Returned());
  EXPECT_TRUE(run.CancelAndWait());
}

TEST(WatchStoreManagerBlockingTest, ImmediateStartsFunctionsEvenWithCancelledContext) {
  StartLog log;
  auto manager = NewWatchStoreManagerImmediate("foo");
  manager->Register("bar", log.Function("bar"));
  manager->Register("qux", log.Function("qux"));
  auto [ctx, cancel] = WithCancel(Context::Background());
  cancel();
  manager->Run(ctx);  // waits for both functions, which return at once
  EXPECT_THAT(log.Started(), UnorderedElementsAre("bar", "qux"));
}

TEST_F(WatchStoreManagerTest, SyncStartsFunctionsWhenTheirSyncedKeyAppears) {
  auto& manager =
      Sync({ListDone(), Create("not-registered"), Create("bar"), Create("bax"), Create("qux")});
  ScriptedWatchStoreBackend& backend = *backend_;
  manager.Register("bar", log_.Returning("bar"));
  manager.Register("bax", log_.Returning("baz"));
  manager.Register("qux", log_.Returning("qux"));
  Start();
  Settle();
  EXPECT_THAT(log_.Started(), ElementsAre("bar", "baz", "qux"));  // in the synced keys' order
  EXPECT_THAT(backend.Prefixes(), ElementsAre("cilium/synced/foo/"));
  EXPECT_FALSE(Returned());
  cancel_();
  Settle();
  EXPECT_TRUE(Returned());
  EXPECT_EQ(backend.NumStopped(), 1u);
}

TEST_F(WatchStoreManagerTest, SyncStartsOnlyFunctionsWhoseKeyAppearedAndOnlyOnce) {
  auto& manager = Sync({ListDone()});
  ScriptedWatchStoreBackend& backend = *backend_;
  manager.Register("cilium/state/nodes/v1", log_.Returning("nodes"));
  manager.Register("cilium/state/services/v1", log_.Returning("services"));
  Start();
  Settle();
  ASSERT_EQ(backend.Prefixes().size(), 1u);
  EXPECT_THAT(log_.Started(), IsEmpty());
  ASSERT_TRUE(backend.Feed(Create("cilium/state/nodes/v1")));
  Settle();
  EXPECT_THAT(log_.Started(), ElementsAre("nodes"));
  // A modified synced key (e.g. rewritten after its lease expired) does not start it again.
  ASSERT_TRUE(backend.Feed(KeyValueEvent{EventType::kModify, "cilium/state/nodes/v1", ""}));
  Settle();
  EXPECT_THAT(log_.Started(), ElementsAre("nodes"));
  ASSERT_TRUE(backend.Feed(Create("cilium/state/services/v1")));
  Settle();
  EXPECT_THAT(log_.Started(), ElementsAre("nodes", "services"));
  EXPECT_THAT(backend.Prefixes(), ElementsAre("cilium/synced/foo/"));
}

// The blocking Run of a sync manager, on a thread, with a backend producing on its own thread.
TEST(WatchStoreManagerBlockingTest, SyncRunStartsFunctionsWhenTheirSyncedKeyAppears) {
  StartLog log;
  auto backend = std::make_shared<FakeWatchStoreBackend>(
      std::vector<KeyValueEvent>{ListDone(), Create("not-registered"), Create("bar")});
  auto manager = NewWatchStoreManagerSync(backend, "foo");
  manager->Register("bar", log.Function("bar"));
  manager->Register("qux", log.Function("qux"));
  ManagerRun run(*manager);
  ASSERT_TRUE(log.WaitForStarted(1));
  ASSERT_TRUE(backend->Feed(Create("qux")));
  ASSERT_TRUE(log.WaitForStarted(2));
  EXPECT_THAT(log.Started(), ElementsAre("bar", "qux"));
  EXPECT_THAT(backend->Prefixes(), ElementsAre("cilium/synced/foo/"));
  EXPECT_TRUE(run.CancelAndWait());
}

void ExpectMisuseThrows(WatchStoreManager& manager) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  cancel();
  manager.Run(ctx);
  EXPECT_THROW(manager.Register("foo", [](const Context&) {}), std::logic_error);
  EXPECT_THROW(manager.Run(ctx), std::logic_error);
}

TEST(WatchStoreManagerBlockingTest, ImmediateRegisterAfterRunAndSecondRunThrow) {
  ExpectMisuseThrows(*NewWatchStoreManagerImmediate("foo"));
}

TEST(WatchStoreManagerBlockingTest, SyncRegisterAfterRunAndSecondRunThrow) {
  auto backend = std::make_shared<FakeWatchStoreBackend>();
  ExpectMisuseThrows(*NewWatchStoreManagerSync(backend, "foo"));
}

TEST_F(WatchStoreManagerTest, SecondRunAsyncThrowsAtOnce) {
  auto& manager = Immediate();
  Start();
  EXPECT_THROW((void)manager.RunAsync(executor_, ctx_, &functions_), std::logic_error);
  EXPECT_THROW(manager.Register("late", log_.Returning("late")), std::logic_error);
}

}  // namespace
}  // namespace kvstore::store

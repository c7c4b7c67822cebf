#include "kvstore/store/watch_store_manager.h"

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/eventually.h"
#include "tests/support/fake_watch_store_backend.h"

namespace kvstore::store {
namespace {

using ::kvstore::testing::Eventually;
using ::kvstore::testing::FakeWatchStoreBackend;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

KeyValueEvent Create(std::string key) {
  return KeyValueEvent{EventType::kCreate, std::move(key), ""};
}
KeyValueEvent ListDone() { return KeyValueEvent{EventType::kListDone, "", ""}; }

// Records which registered functions started; each then runs until its context is done.
class StartLog {
 public:
  WSMFunc Function(std::string name) {
    return [this, name](const Context& ctx) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        started_.push_back(name);
      }
      ctx.Wait();
    };
  }
  std::vector<std::string> Started() const {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> started_;
};

// Runs the manager on a thread; Cancel() cancels its context.
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
  // Cancels and reports whether Run returned within `bound`.
  bool CancelAndWait(std::chrono::milliseconds bound) {
    cancel_();
    return returned_.wait_for(bound) == std::future_status::ready;
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

TEST(WatchStoreManagerTest, ImmediateStartsEveryRegisteredFunction) {
  StartLog log;
  auto manager = NewWatchStoreManagerImmediate("foo");
  manager->Register("bar", log.Function("bar"));
  manager->Register("bax", log.Function("baz"));
  manager->Register("qux", log.Function("qux"));
  ManagerRun run(*manager);
  ASSERT_TRUE(Eventually([&] { return log.Started().size() == 3; }));
  EXPECT_THAT(log.Started(), UnorderedElementsAre("bar", "baz", "qux"));
  EXPECT_FALSE(run.Returned());
  EXPECT_TRUE(run.CancelAndWait(std::chrono::milliseconds(100)));
}

TEST(WatchStoreManagerTest, ImmediateStartsFunctionsEvenWithCancelledContext) {
  StartLog log;
  auto manager = NewWatchStoreManagerImmediate("foo");
  manager->Register("bar", log.Function("bar"));
  manager->Register("qux", log.Function("qux"));
  auto [ctx, cancel] = WithCancel(Context::Background());
  cancel();
  manager->Run(ctx);  // waits for both functions, which return at once
  EXPECT_THAT(log.Started(), UnorderedElementsAre("bar", "qux"));
}

TEST(WatchStoreManagerTest, SyncStartsFunctionsWhenTheirSyncedKeyAppears) {
  StartLog log;
  auto backend = std::make_shared<FakeWatchStoreBackend>(std::vector<KeyValueEvent>{
      ListDone(), Create("not-registered"), Create("bar"), Create("bax"), Create("qux")});
  auto manager = NewWatchStoreManagerSync(backend, "foo");
  manager->Register("bar", log.Function("bar"));
  manager->Register("bax", log.Function("baz"));
  manager->Register("qux", log.Function("qux"));
  ManagerRun run(*manager);
  ASSERT_TRUE(Eventually([&] { return log.Started().size() == 3; }));
  EXPECT_THAT(log.Started(), UnorderedElementsAre("bar", "baz", "qux"));
  EXPECT_THAT(backend->Prefixes(), ElementsAre("cilium/synced/foo/"));
  EXPECT_TRUE(run.CancelAndWait(std::chrono::milliseconds(100)));
}

TEST(WatchStoreManagerTest, SyncStartsOnlyFunctionsWhoseKeyAppearedAndOnlyOnce) {
  StartLog log;
  auto backend = std::make_shared<FakeWatchStoreBackend>(std::vector<KeyValueEvent>{ListDone()});
  auto manager = NewWatchStoreManagerSync(backend, "foo");
  manager->Register("cilium/state/nodes/v1", log.Function("nodes"));
  manager->Register("cilium/state/services/v1", log.Function("services"));
  ManagerRun run(*manager);
  ASSERT_TRUE(backend->WaitForWatchers(1));
  EXPECT_THAT(log.Started(), IsEmpty());
  ASSERT_TRUE(backend->Feed(Create("cilium/state/nodes/v1")));
  ASSERT_TRUE(Eventually([&] { return log.Started().size() == 1; }));
  // A modified synced key (e.g. rewritten after its lease expired) does not start it again; the
  // sentinel function proves the event was handled.
  ASSERT_TRUE(backend->Feed(KeyValueEvent{EventType::kModify, "cilium/state/nodes/v1", ""}));
  ASSERT_TRUE(backend->Feed(Create("cilium/state/services/v1")));
  ASSERT_TRUE(Eventually([&] { return log.Started().size() == 2; }));
  EXPECT_THAT(log.Started(), ElementsAre("nodes", "services"));
  EXPECT_THAT(backend->Prefixes(), ElementsAre("cilium/synced/foo/"));
  EXPECT_TRUE(run.CancelAndWait(std::chrono::milliseconds(100)));
}

void ExpectMisuseThrows(WatchStoreManager& manager) {
  auto [ctx, cancel] = WithCancel(Context::Background());
  cancel();
  manager.Run(ctx);
  EXPECT_THROW(manager.Register("foo", [](const Context&) {}), std::logic_error);
  EXPECT_THROW(manager.Run(ctx), std::logic_error);
}

TEST(WatchStoreManagerTest, ImmediateRegisterAfterRunAndSecondRunThrow) {
  ExpectMisuseThrows(*NewWatchStoreManagerImmediate("foo"));
}

TEST(WatchStoreManagerTest, SyncRegisterAfterRunAndSecondRunThrow) {
  auto backend = std::make_shared<FakeWatchStoreBackend>();
  ExpectMisuseThrows(*NewWatchStoreManagerSync(backend, "foo"));
}

}  // namespace
}  // namespace kvstore::store

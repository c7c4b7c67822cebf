// What the etcd backend records when given metrics: every operation's duration and outcome, how
// long watch events waited for their watcher, and the leases it holds (including one revoked from
// outside and one taken back by Close).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "kvstore/store/metrics.h"
#include "prometheus/registry.h"
#include "tests/integration/etcd_test_util.h"
#include "tests/support/metrics_reader.h"

namespace kvstore::testing {
namespace {

constexpr char kOperations[] = "cilium_kvstore_operations_duration_seconds";
constexpr char kEventsQueue[] = "cilium_kvstore_events_queue_seconds";
constexpr char kLeases[] = "cilium_kvstore_leases";

class EtcdMetricsTest : public SharedEtcdTest {
 protected:
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    // The scope is the third and fourth parts of the key: the test's name and "v1".
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    prefix_ = "cilium/metrics/" + name + "/v1/";
    scope_ = name + "/v1";
  }

  std::shared_ptr<Backend> Connect(std::chrono::seconds ttl = std::chrono::seconds(60)) {
    etcd::EtcdConfig config = cluster_->ClientConfig();
    config.lease_ttl = ttl;
    config.metrics = metrics_;
    return MustConnect(config);
  }

  double Operations(const std::string& kind, const std::string& action,
                    const std::string& outcome) const {
    return ReadMetric(registry_, kOperations,
                      {{"scope", scope_}, {"kind", kind}, {"action", action}, {"outcome", outcome}})
        .value_or(0);
  }
  double QueuedEvents(const std::string& action) const {
    return ReadMetric(registry_, kEventsQueue, {{"scope", scope_}, {"action", action}}).value_or(0);
  }
  double Leases() const { return ReadMetric(registry_, kLeases, {}).value_or(0); }

  prometheus::Registry registry_;
  std::shared_ptr<store::Metrics> metrics_ = std::make_shared<store::Metrics>(registry_);
  std::string scope_;
  std::string prefix_;
  Context ctx_;
};

TEST_F(EtcdMetricsTest, OperationsAndWatchEventsAreRecordedUnderTheKeysScope) {
  std::shared_ptr<Backend> backend = Connect();
  ASSERT_NE(backend, nullptr);
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a", "1", false).ok());
  ASSERT_TRUE(backend->Get(ctx_, prefix_ + "a").ok());
  EXPECT_FALSE(
      backend->Update(ctx_, prefix_ + "big", std::string(kMaxValueBytes + 1, 'x'), false).ok());

  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, prefix_, 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a", "2", false).ok());
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "b", "1", false).ok());
  ASSERT_TRUE(backend->Delete(ctx_, prefix_ + "b").ok());
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.events.size() == 5; }));
  watcher->Stop();

  EXPECT_EQ(Operations("set", "Update", "success"), 3);
  EXPECT_EQ(Operations("set", "Update", "fail"), 1);
  EXPECT_EQ(Operations("read", "Get", "success"), 1);
  EXPECT_EQ(Operations("delete", "Delete", "success"), 1);
  EXPECT_EQ(QueuedEvents("create"), 2);  // a listed, b created
  EXPECT_EQ(QueuedEvents("list-done"), 1);
  EXPECT_EQ(QueuedEvents("modify"), 1);
  EXPECT_EQ(QueuedEvents("delete"), 1);
}

TEST_F(EtcdMetricsTest, LeaseGaugeFollowsGrantsLossesAndClose) {
  std::shared_ptr<Backend> backend = Connect(std::chrono::seconds(3));
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(Leases(), 0);
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a", "v", true).ok());
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "b", "v", true).ok());
  EXPECT_EQ(Leases(), 1) << "one session lease for both keys";

  // Revoked from outside: the keep-alive (every TTL/3) finds it gone.
  auto listed = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_TRUE(cluster_->RevokeLease(listed->at(prefix_ + "a").lease_id).ok());
  EXPECT_TRUE(Eventually([&] { return Leases() == 0; }));
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a", "v", true).ok());
  EXPECT_EQ(Leases(), 1);

  backend->Close();
  EXPECT_EQ(Leases(), 0);
}

}  // namespace
}  // namespace kvstore::testing

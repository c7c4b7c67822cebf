// Fail-over against a real 3-member etcd cluster: the leader killed, a member paused (SIGSTOP).
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <map>
#include <optional>
#include <string>

#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

class EtcdClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EtcdClusterOptions options;
    options.members = 3;
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }

  std::unique_ptr<EtcdCluster> cluster_;
  Context ctx_;
  const std::string prefix_ = "cluster/";
};

TEST_F(EtcdClusterTest, LeaderKilledClientAndWatcherCarryOn) {
  std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a", "1", true).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, prefix_, 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  {
    const BackendStatus backend_status = backend->Status();
    EXPECT_EQ(backend_status.state, BackendState::kOk) << backend_status.message;
  }

  absl::StatusOr<int> leader = cluster_->LeaderIndex();
  ASSERT_TRUE(leader.ok()) << leader.status();
  ASSERT_TRUE(cluster_->KillMember(*leader).ok());

  ASSERT_TRUE(Retry([&] { return backend->Update(ctx_, prefix_ + "b", "2", true); }).ok());
  ASSERT_TRUE(Retry([&] { return backend->Update(ctx_, prefix_ + "a", "3", false); }).ok());
  std::map<std::string, std::string> expected = {{prefix_ + "a", "3"}, {prefix_ + "b", "2"}};
  ASSERT_TRUE(view.ReadUntil(*watcher, [&](const WatchView& v) { return v.keys == expected; }));
  auto list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(Plain(*list), expected);
  BackendStatus status = backend->Status();
  EXPECT_EQ(status.state, BackendState::kWarning) << status.message;
  EXPECT_NE(status.message.find("2/3 connected"), std::string::npos) << status.message;
  EXPECT_EQ(view.list_done_count, 1);
  watcher->Stop();
}

// Backend::UpdateAsync, waited for.
absl::Status UpdateAsyncAndWait(Backend& backend, const std::string& key, const std::string& value,
                                bool lease) {
  std::promise<absl::Status> done;
  std::future<absl::Status> result = done.get_future();
  backend.UpdateAsync(Context(), key, value, lease,
                      [&done](absl::Status status) { done.set_value(std::move(status)); });
  return result.get();
}

TEST_F(EtcdClusterTest, AsyncCallsFailOverWhenAMemberIsKilled) {
  std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
  // Every member has served a request (round robin), so each channel is connected.
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        UpdateAsyncAndWait(*backend, prefix_ + "before" + std::to_string(i), "v", true).ok());
  }
  absl::StatusOr<int> leader = cluster_->LeaderIndex();
  ASSERT_TRUE(leader.ok()) << leader.status();
  ASSERT_TRUE(cluster_->KillMember(*leader).ok());

  // A request that may have reached the killed member fails and is not repeated (as a blocking
  // one); the others go to the members left.
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 6; ++i) expected[prefix_ + "before" + std::to_string(i)] = "v";
  for (int i = 0; i < 12; ++i) {
    std::string key = prefix_ + "after" + std::to_string(i);
    ASSERT_TRUE(Retry([&] { return UpdateAsyncAndWait(*backend, key, "w", i % 2 == 0); }).ok());
    expected[key] = "w";
  }
  std::promise<absl::StatusOr<std::optional<std::string>>> got;
  backend->GetAsync(Context(), prefix_ + "after3",
                    [&got](absl::StatusOr<std::optional<std::string>> value) {
                      got.set_value(std::move(value));
                    });
  absl::StatusOr<std::optional<std::string>> value = got.get_future().get();
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->value_or("<missing>"), "w");
  auto list = backend->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(Plain(*list), expected);
}

TEST_F(EtcdClusterTest, PausedMemberIsRoutedAround) {
  std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, prefix_, 64);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  // Every member gets requests (round robin) before one stops answering.
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(backend->Update(ctx_, prefix_ + "before" + std::to_string(i), "v", false).ok());
  }
  absl::StatusOr<int> leader = cluster_->LeaderIndex();
  ASSERT_TRUE(leader.ok());
  ASSERT_TRUE(cluster_->PauseMember(*leader).ok());

  std::map<std::string, std::string> expected;
  for (int i = 0; i < 6; ++i) expected[prefix_ + "before" + std::to_string(i)] = "v";
  for (int i = 0; i < 6; ++i) {
    std::string key = prefix_ + "during" + std::to_string(i);
    ASSERT_TRUE(Retry([&] { return backend->Update(ctx_, key, "v", false); }).ok());
    expected[key] = "v";
  }
  // The watcher, whichever member it was on, converges (keep-alive pings detect a silent one).
  ASSERT_TRUE(view.ReadUntil(
      *watcher, [&](const WatchView& v) { return v.keys == expected; }, std::chrono::seconds(40)));
  ASSERT_TRUE(cluster_->ResumeMember(*leader).ok());
  EXPECT_EQ(view.list_done_count, 1);
  watcher->Stop();
}

}  // namespace
}  // namespace kvstore::testing

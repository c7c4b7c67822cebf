// Watch resilience against a real etcd: resume after a member restart and after a network cut
// (events written meanwhile arrive once), re-list with a diff after compaction.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/watcher_producer.h"
#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

class EtcdWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    writer_ = MustConnect(cluster_->ClientConfig());
  }

  // A backend whose only way to etcd goes through `proxy`.
  std::shared_ptr<Backend> ConnectThrough(const TcpProxy& proxy) {
    etcd::EtcdConfig config = cluster_->ClientConfig();
    config.endpoints = {proxy.Endpoint()};
    return MustConnect(config);
  }

  int ClientPort() const {
    std::string endpoint = cluster_->ClientEndpoint(0);
    return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }

  std::unique_ptr<EtcdCluster> cluster_;
  std::shared_ptr<Backend> writer_;
  Context ctx_;
  const std::string prefix_ = "watch/";
};

// Counts events per key and type after the list.
int Count(const WatchView& view, EventType type, const std::string& key) {
  int n = 0;
  for (const KeyValueEvent& ev : view.events) n += (ev.type == type && ev.key == key);
  return n;
}

TEST_F(EtcdWatchTest, SurvivesMemberRestartWithoutLossOrDuplicates) {
  std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "a", "1", false).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, prefix_, 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "b", "2", false).ok());
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.keys.size() == 2; }));

  ASSERT_TRUE(cluster_->StopMember(0).ok());
  ASSERT_TRUE(cluster_->StartMember(0).ok());
  ASSERT_TRUE(Retry([&] { return writer_->Update(ctx_, prefix_ + "c", "3", false); }).ok());
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "a", "4", false).ok());
  ASSERT_TRUE(writer_->Delete(ctx_, prefix_ + "b").ok());

  std::map<std::string, std::string> expected = {{prefix_ + "a", "4"}, {prefix_ + "c", "3"}};
  ASSERT_TRUE(view.ReadUntil(*watcher, [&](const WatchView& v) { return v.keys == expected; }));
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(300)).has_value()) << "no duplicates";
  EXPECT_EQ(Count(view, EventType::kCreate, prefix_ + "c"), 1);
  EXPECT_EQ(Count(view, EventType::kModify, prefix_ + "a"), 1);
  EXPECT_EQ(Count(view, EventType::kDelete, prefix_ + "b"), 1);
  EXPECT_EQ(view.list_done_count, 1);
  watcher->Stop();
}

TEST_F(EtcdWatchTest, ResumesAfterNetworkCutWithEventsWrittenMeanwhile) {
  TcpProxy proxy(ClientPort());
  std::shared_ptr<Backend> backend = ConnectThrough(proxy);
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "a", "1", false).ok());
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "b", "1", false).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, prefix_, 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));

  proxy.Cut();
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "a", "2", false).ok());
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "a", "3", false).ok());
  ASSERT_TRUE(writer_->Delete(ctx_, prefix_ + "b").ok());
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "c", "1", false).ok());
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(300)).has_value());
  proxy.Restore();

  std::map<std::string, std::string> expected = {{prefix_ + "a", "3"}, {prefix_ + "c", "1"}};
  ASSERT_TRUE(view.ReadUntil(*watcher, [&](const WatchView& v) { return v.keys == expected; }));
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(300)).has_value());
  // Every change arrives once, in order, as it happened (history, not a re-list).
  EXPECT_EQ(Count(view, EventType::kModify, prefix_ + "a"), 2);
  EXPECT_EQ(Count(view, EventType::kDelete, prefix_ + "b"), 1);
  EXPECT_EQ(Count(view, EventType::kCreate, prefix_ + "c"), 1);
  EXPECT_EQ(view.list_done_count, 1);
  watcher->Stop();
}

TEST_F(EtcdWatchTest, CompactionPastTheWatcherRelistsTheDifference) {
  TcpProxy proxy(ClientPort());
  std::shared_ptr<Backend> backend = ConnectThrough(proxy);
  for (const char* k : {"same", "changed", "vanished"}) {
    ASSERT_TRUE(writer_->Update(ctx_, prefix_ + k, "1", false).ok());
  }
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, prefix_, 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  size_t listed = view.events.size();

  proxy.Cut();
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "changed", "2", false).ok());
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "changed", "3", false).ok());
  ASSERT_TRUE(writer_->Delete(ctx_, prefix_ + "vanished").ok());
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "new", "1", false).ok());
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "brief", "1", false).ok());
  ASSERT_TRUE(writer_->Delete(ctx_, prefix_ + "brief").ok());
  ASSERT_TRUE(cluster_->Compact().ok());
  proxy.Restore();

  std::map<std::string, std::string> expected = {
      {prefix_ + "same", "1"}, {prefix_ + "changed", "3"}, {prefix_ + "new", "1"}};
  ASSERT_TRUE(view.ReadUntil(*watcher, [&](const WatchView& v) { return v.keys == expected; }));
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(300)).has_value());
  std::vector<KeyValueEvent> diff(view.events.begin() + static_cast<std::ptrdiff_t>(listed),
                                  view.events.end());
  // Only the difference, sorted by key: no event for unchanged keys, none for the key that came
  // and went while the watcher was away, the vanished key with the last value the watcher was
  // told, and no second kListDone.
  std::vector<KeyValueEvent> want = {
      {EventType::kModify, prefix_ + "changed", "3"},
      {EventType::kCreate, prefix_ + "new", "1"},
      {EventType::kDelete, prefix_ + "vanished", "1"},
  };
  EXPECT_EQ(diff, want);
  EXPECT_EQ(view.list_done_count, 1);

  // Live events continue after the re-list.
  const auto before_last_write = std::chrono::system_clock::now();
  ASSERT_TRUE(writer_->Update(ctx_, prefix_ + "same", "2", false).ok());
  ASSERT_TRUE(view.ReadUntil(*watcher, [&](const WatchView& v) {
    auto it = v.keys.find(prefix_ + "same");
    return it != v.keys.end() && it->second == "2";
  }));
  EXPECT_EQ(view.events.back().type, EventType::kModify);

  // What the backend tells of the watch: the compaction it went through, both lists, and that it
  // heard from etcd no earlier than the write just seen.
  std::vector<WatchFreshness> watches = backend->Watches();
  ASSERT_EQ(watches.size(), 1u);
  EXPECT_EQ(watches[0].prefix, prefix_);
  // Once compacted; the cut may also have ended the stream (or the connection survives it).
  std::map<std::string, uint64_t> restarts = watches[0].restarts;
  EXPECT_EQ(restarts["compaction"], 1u);
  restarts.erase("compaction");
  restarts.erase("stream_loss");
  EXPECT_TRUE(restarts.empty()) << "no other reason: " << restarts.begin()->first;
  EXPECT_GE(watches[0].list_pages, 2u);
  ASSERT_TRUE(watches[0].last_heard.has_value());
  EXPECT_GE(*watches[0].last_heard, before_last_write);
  EXPECT_TRUE(watches[0].stalled.empty());
  watcher->Stop();
  EXPECT_TRUE(backend->Watches().empty());
}

TEST_F(EtcdWatchTest, OperationsDuringACutFailWithTheEndpoint) {
  TcpProxy proxy(ClientPort());
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.endpoints = {proxy.Endpoint()};
  config.request_timeout = std::chrono::milliseconds(800);
  std::shared_ptr<Backend> backend = MustConnect(config);
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "x", "1", false).ok());
  proxy.Cut();
  absl::Status status = backend->Update(ctx_, prefix_ + "x", "2", false);
  EXPECT_TRUE(status.code() == absl::StatusCode::kUnavailable ||
              status.code() == absl::StatusCode::kDeadlineExceeded)
      << status;
  EXPECT_NE(status.message().find(proxy.Endpoint()), absl::string_view::npos) << status;
  proxy.Restore();
  absl::Status restored = Retry([&] { return backend->Update(ctx_, prefix_ + "x", "3", false); });
  EXPECT_TRUE(restored.ok()) << restored;
}

// The process's only backend, destroyed while its watch stream and list calls end: each time,
// the last gRPC channel goes away, and with it gRPC's callback threads. That must happen on our
// thread; a call context outliving the backend on a callback thread made such a thread free its
// own completion queue (a double free under ASan, seen in kvstorectl mesh).
TEST(EtcdBackendLifetimeTest, DestroyingTheOnlyBackendWhileStreamsEndIsClean) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Context ctx;
  for (int i = 0; i < 20; ++i) {
    std::shared_ptr<Backend> backend = MustConnect((*cluster)->ClientConfig());
    ASSERT_NE(backend, nullptr);
    ASSERT_TRUE(backend->Update(ctx, "life/" + std::to_string(i), "v", /*lease=*/true).ok());
    std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx, "life/", 4);
    WatchView view;
    ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
    backend.reset();  // the last reference: closes the backend and its watchers
    EXPECT_TRUE(view.ReadUntil(
        *watcher, [&](const WatchView&) { return internal::WatcherProducer(*watcher).Closed(); }));
  }
}

}  // namespace
}  // namespace kvstore::testing

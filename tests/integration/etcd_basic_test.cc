// Basic operations of the etcd backend against a real single-member etcd.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/watcher_producer.h"
#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

class EtcdBasicTest : public SharedEtcdTest {
 protected:
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    prefix_ = std::string("test/") +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
    backend_ = MustConnect(cluster_->ClientConfig());
    ASSERT_NE(backend_, nullptr);
  }
  void TearDown() override {
    if (backend_) backend_->Close();
  }

  std::string prefix_;
  std::shared_ptr<Backend> backend_;
  Context ctx_;
};

TEST_F(EtcdBasicTest, GetUpdateDelete) {
  std::string key = prefix_ + "a";
  auto missing = backend_->Get(ctx_, key);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  ASSERT_TRUE(backend_->Update(ctx_, key, "v1", false).ok());
  auto got = backend_->Get(ctx_, key);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->value_or(""), "v1");

  ASSERT_TRUE(backend_->Delete(ctx_, key).ok());
  EXPECT_TRUE(backend_->Delete(ctx_, key).ok()) << "deleting a missing key is OK";
  EXPECT_FALSE(backend_->Get(ctx_, key)->has_value());
}

// A completion runs on the thread that completes every call, so a blocking call there would wait
// for itself: it fails at once, and the backend goes on working.
TEST_F(EtcdBasicTest, BlockingCallFromAnAsyncCompletionFailsClearlyInsteadOfHanging) {
  std::promise<absl::Status> nested;
  backend_->UpdateAsync(ctx_, prefix_ + "a", "1", false, [&](absl::Status status) {
    if (!status.ok()) {
      nested.set_value(status);
      return;
    }
    nested.set_value(backend_->Update(ctx_, prefix_ + "b", "2", false));
  });
  const absl::Status status = nested.get_future().get();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("start it asynchronously"), absl::string_view::npos) << status;
  EXPECT_EQ(backend_->Get(ctx_, prefix_ + "a")->value_or("<missing>"), "1");
  EXPECT_FALSE(backend_->Get(ctx_, prefix_ + "b")->has_value());
}

TEST_F(EtcdBasicTest, ListPrefixReturnsRevisionsAndLeases) {
  ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "x", "1", false).ok());
  ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "y", "2", true).ok());
  ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "y2", "3", true).ok());
  ASSERT_TRUE(backend_->Update(ctx_, "test/other", "no", false).ok());
  auto list = backend_->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 3u);
  const Value& x = list->at(prefix_ + "x");
  const Value& y = list->at(prefix_ + "y");
  EXPECT_EQ(x.data, "1");
  EXPECT_EQ(x.lease_id, 0);
  EXPECT_GT(x.mod_revision, 0);
  EXPECT_GT(y.mod_revision, x.mod_revision);
  EXPECT_NE(y.lease_id, 0);
  EXPECT_EQ(list->at(prefix_ + "y2").lease_id, y.lease_id) << "one session lease";
}

TEST_F(EtcdBasicTest, UpdateIfDifferent) {
  std::string key = prefix_ + "k";
  auto wrote = backend_->UpdateIfDifferent(ctx_, key, "v", false);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote) << "missing key";
  EXPECT_FALSE(*backend_->UpdateIfDifferent(ctx_, key, "v", false)) << "same value";
  EXPECT_TRUE(*backend_->UpdateIfDifferent(ctx_, key, "w", false)) << "other value";
  EXPECT_TRUE(*backend_->UpdateIfDifferent(ctx_, key, "w", true)) << "not on our lease";
  EXPECT_FALSE(*backend_->UpdateIfDifferent(ctx_, key, "w", true)) << "same value and lease";
  auto list = backend_->ListPrefix(ctx_, key);
  ASSERT_TRUE(list.ok());
  EXPECT_NE(list->at(key).lease_id, 0);
}

TEST_F(EtcdBasicTest, CreateOnly) {
  std::string key = prefix_ + "c";
  auto created = backend_->CreateOnly(ctx_, key, "first", false);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  created = backend_->CreateOnly(ctx_, key, "second", true);
  ASSERT_TRUE(created.ok());
  EXPECT_FALSE(*created);
  EXPECT_EQ(backend_->Get(ctx_, key)->value_or(""), "first");
}

TEST_F(EtcdBasicTest, DeletePrefix) {
  for (const char* k : {"a", "b/c", "d"}) {
    ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "p/" + k, "v", false).ok());
  }
  ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "q", "v", false).ok());
  ASSERT_TRUE(backend_->DeletePrefix(ctx_, prefix_ + "p/").ok());
  auto list = backend_->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
  EXPECT_TRUE(list->count(prefix_ + "q"));
}

TEST_F(EtcdBasicTest, BinaryKeysAndValues) {
  std::string key = prefix_ + std::string("bin\0\xff\x01", 6);
  std::string value("\0\x01\xfe\xff", 4);
  ASSERT_TRUE(backend_->Update(ctx_, key, value, false).ok());
  EXPECT_EQ(backend_->Get(ctx_, key)->value_or(""), value);
  auto list = backend_->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->at(key).data, value);
}

TEST_F(EtcdBasicTest, LargeValues) {
  std::string key = prefix_ + "big";
  std::string largest(kMaxValueBytes, 'x');
  ASSERT_TRUE(backend_->Update(ctx_, key, largest, false).ok());
  EXPECT_EQ(backend_->Get(ctx_, key)->value_or("").size(), kMaxValueBytes);
  absl::Status too_large = backend_->Update(ctx_, key, largest + "y", false);
  EXPECT_EQ(too_large.code(), absl::StatusCode::kResourceExhausted) << too_large;
  EXPECT_EQ(backend_->UpdateIfDifferent(ctx_, key, largest + "y", true).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(backend_->CreateOnly(ctx_, key + "2", largest + "y", true).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(EtcdBasicTest, PaginationWithSmallPages) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.list_page_size = 3;
  std::shared_ptr<Backend> paged = MustConnect(config);
  std::map<std::string, std::string> expected;
  for (int i = 0; i < 20; ++i) {
    std::string key = absl::StrCat(prefix_, "k", i);
    expected[key] = absl::StrCat("v", i);
    ASSERT_TRUE(paged->Update(ctx_, key, expected[key], false).ok());
  }
  // Keys just outside the prefix on both sides must not leak in.
  std::string before = prefix_.substr(0, prefix_.size() - 1);
  ASSERT_TRUE(paged->Update(ctx_, before, "outside", false).ok());
  ASSERT_TRUE(paged->Update(ctx_, before + "0", "outside", false).ok());
  auto list = paged->ListPrefix(ctx_, prefix_);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(Plain(*list), expected);

  // The watcher's list is paginated the same way and ends with one kListDone.
  std::shared_ptr<Watcher> watcher = paged->ListAndWatch(ctx_, prefix_, 2);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  EXPECT_EQ(view.keys, expected);
  EXPECT_EQ(view.events.size(), expected.size() + 1);
  for (size_t i = 0; i + 1 < view.events.size(); ++i) {
    EXPECT_EQ(view.events[i].type, EventType::kCreate);
    if (i > 0) {
      EXPECT_LT(view.events[i - 1].key, view.events[i].key) << "sorted by key";
    }
  }
  watcher->Stop();
  paged->Close();
}

TEST_F(EtcdBasicTest, ListAndWatchDeliversLiveEvents) {
  ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "a", "1", false).ok());
  std::shared_ptr<Watcher> watcher = backend_->ListAndWatch(ctx_, prefix_, 8);
  auto ev = watcher->NextFor(std::chrono::seconds(10));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(*ev, (KeyValueEvent{EventType::kCreate, prefix_ + "a", "1"}));
  ev = watcher->NextFor(std::chrono::seconds(10));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->type, EventType::kListDone);

  ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "a", "2", false).ok());
  ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "b", "3", false).ok());
  ASSERT_TRUE(backend_->Delete(ctx_, prefix_ + "a").ok());
  ASSERT_TRUE(backend_->Update(ctx_, "test/unrelated", "x", false).ok());
  std::vector<KeyValueEvent> expected = {
      {EventType::kModify, prefix_ + "a", "2"},
      {EventType::kCreate, prefix_ + "b", "3"},
      {EventType::kDelete, prefix_ + "a", "2"},
  };
  for (const KeyValueEvent& want : expected) {
    ev = watcher->NextFor(std::chrono::seconds(10));
    ASSERT_TRUE(ev.has_value());
    EXPECT_EQ(*ev, want) << EventTypeName(ev->type) << " " << ev->key << " " << ev->value;
  }
  watcher->Stop();
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(10)).has_value());
}

TEST_F(EtcdBasicTest, ManyWatchersShareTheStreamAndAFullOneStallsNobody) {
  // One watcher nobody reads (capacity 1) must not hold up the others.
  std::shared_ptr<Watcher> stuck = backend_->ListAndWatch(ctx_, prefix_, 1);
  std::vector<std::shared_ptr<Watcher>> watchers;
  for (int i = 0; i < 50; ++i) watchers.push_back(backend_->ListAndWatch(ctx_, prefix_, 4));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(backend_->Update(ctx_, prefix_ + "k" + std::to_string(i), "v", false).ok());
  }
  for (auto& w : watchers) {
    WatchView view;
    ASSERT_TRUE(view.ReadUntil(*w, [](const WatchView& v) { return v.keys.size() == 20; }));
  }
  for (auto& w : watchers) w->Stop();
  stuck->Stop();
}

TEST_F(EtcdBasicTest, WatcherEndsWithItsContext) {
  auto [ctx, cancel] = WithCancel(ctx_);
  std::shared_ptr<Watcher> watcher = backend_->ListAndWatch(ctx, prefix_, 1);
  auto ev = watcher->NextFor(std::chrono::seconds(10));
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->type, EventType::kListDone);
  cancel();
  EXPECT_TRUE(Eventually([&] { return internal::WatcherProducer(*watcher).Closed(); },
                         std::chrono::seconds(5)));
}

TEST_F(EtcdBasicTest, CancelledContextEndsCallsPromptly) {
  auto [ctx, cancel] = WithCancel(ctx_);
  cancel();
  EXPECT_EQ(backend_->Get(ctx, prefix_ + "x").status().code(), absl::StatusCode::kCancelled);
}

TEST_F(EtcdBasicTest, StatusNamesEndpointAndVersion) {
  BackendStatus status = backend_->Status();
  EXPECT_EQ(status.state, BackendState::kOk) << status.message;
  EXPECT_NE(status.message.find(cluster_->ClientEndpoint(0)), std::string::npos) << status.message;
  EXPECT_NE(status.message.find("3.4"), std::string::npos) << status.message;
  EXPECT_NE(status.message.find("Leader"), std::string::npos) << status.message;
  backend_->Close();
  EXPECT_EQ(backend_->Status().state, BackendState::kClosed);
}

TEST_F(EtcdBasicTest, OperationsAfterCloseFail) {
  backend_->Close();
  EXPECT_FALSE(backend_->Get(ctx_, prefix_ + "x").ok());
  std::shared_ptr<Watcher> watcher = backend_->ListAndWatch(ctx_, prefix_, 1);
  EXPECT_FALSE(watcher->NextFor(std::chrono::seconds(5)).has_value());
  EXPECT_TRUE(internal::WatcherProducer(*watcher).Closed());
}

TEST_F(EtcdBasicTest, QpsLimitSpacesRequests) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.qps = 50;
  std::shared_ptr<Backend> limited = MustConnect(config);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 11; ++i) ASSERT_TRUE(limited->Get(ctx_, prefix_ + "x").ok());
  // Eleven requests at 50 per second take at least ten intervals of 20 ms.
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  limited->Close();
}

TEST_F(EtcdBasicTest, CloseFromAnObserverCallbackDoesNotDeadlock) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.lease_ttl = std::chrono::seconds(60);
  std::shared_ptr<Backend> client = MustConnect(config);
  std::atomic<bool> closed{false};
  client->RegisterLeaseExpiredObserver(prefix_, [&](std::string_view) {
    client->Close();
    closed = true;
  });
  ASSERT_TRUE(client->Update(ctx_, prefix_ + "k", "v", true).ok());
  auto list = client->ListPrefix(ctx_, prefix_ + "k");
  ASSERT_TRUE(list.ok());
  ASSERT_TRUE(cluster_->RevokeLease(list->at(prefix_ + "k").lease_id).ok());
  // Notices the loss; may itself fail if the observer closed the client meanwhile.
  (void)client->Update(ctx_, prefix_ + "k2", "v", true);
  EXPECT_TRUE(Eventually([&] { return closed.load(); }));
}

TEST_F(EtcdBasicTest, EndpointThatDoesNotResolveIsKeptAndRoutedAround) {
  // Named first: calls and the watch go to the member that exists, and the name stays in the
  // client (gRPC's resolver keeps trying it) instead of being dropped at start.
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.endpoints.insert(config.endpoints.begin(), "etcd-0.kvstore-test.invalid:2379");
  std::shared_ptr<Backend> backend = MustConnect(config);
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, prefix_, 8);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  for (int i = 0; i < 4; ++i) {
    absl::Status status = backend->Update(ctx_, prefix_ + "dns" + std::to_string(i), "v", false);
    ASSERT_TRUE(status.ok()) << status;
  }
  EXPECT_EQ(backend->Get(ctx_, prefix_ + "dns3")->value_or(""), "v");
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.keys.size() == 4; }));
  BackendStatus status = backend->Status();
  EXPECT_EQ(status.state, BackendState::kWarning) << status.message;
  EXPECT_NE(status.message.find("1/2 connected"), std::string::npos) << status.message;
  EXPECT_NE(status.message.find("etcd-0.kvstore-test.invalid:2379 - "), std::string::npos)
      << status.message;
  watcher->Stop();
}

TEST(EtcdUnreachableTest, FailsAfterRequestTimeoutWithTheEndpoint) {
  std::vector<int> ports = FreeLoopbackPorts(1);
  ASSERT_EQ(ports.size(), 1u);
  etcd::EtcdConfig config;
  config.endpoints = {"127.0.0.1:" + std::to_string(ports[0])};
  config.request_timeout = std::chrono::milliseconds(500);
  config.dial_timeout = std::chrono::milliseconds(200);
  auto start = std::chrono::steady_clock::now();
  std::shared_ptr<Backend> backend = MustConnect(config);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(400))
      << "NewEtcdBackend does not wait for a connection";
  absl::Status status = backend->Update(Context(), "k", "v", false);
  EXPECT_TRUE(status.code() == absl::StatusCode::kDeadlineExceeded ||
              status.code() == absl::StatusCode::kUnavailable)
      << status;
  EXPECT_NE(status.message().find(config.endpoints[0]), absl::string_view::npos) << status;
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(Context(), "x/", 1);
  EXPECT_FALSE(watcher->NextFor(std::chrono::milliseconds(300)).has_value());
  EXPECT_EQ(backend->Status().state, BackendState::kFailure);
  watcher->Stop();
  backend->Close();
}

}  // namespace
}  // namespace kvstore::testing

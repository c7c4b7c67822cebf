// Session leases of the etcd backend against a real etcd: keep-alive, loss detected by the
// keep-alive stream or by a write, lease-expired observers, keys per lease.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>

#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

class EtcdLeaseTest : public SharedEtcdTest {
 protected:
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    prefix_ = std::string("lease/") +
              ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  }

  std::shared_ptr<Backend> Connect(std::chrono::seconds ttl, size_t max_keys = 1000) {
    etcd::EtcdConfig config = cluster_->ClientConfig();
    config.lease_ttl = ttl;
    config.max_keys_per_lease = max_keys;
    return MustConnect(config);
  }

  int64_t LeaseOf(Backend& backend, const std::string& key) {
    auto list = backend.ListPrefix(ctx_, key);
    if (!list.ok() || !list->count(key)) return -1;
    return list->at(key).lease_id;
  }

  // Records the keys passed to a lease-expired observer.
  struct Recorder {
    std::mutex mu;
    std::multiset<std::string> keys;
    std::function<void(std::string_view)> Fn() {
      return [this](std::string_view key) {
        std::lock_guard<std::mutex> guard(mu);
        keys.emplace(key);
      };
    }
    std::multiset<std::string> Keys() {
      std::lock_guard<std::mutex> guard(mu);
      return keys;
    }
  };

  std::string prefix_;
  Context ctx_;
};

TEST_F(EtcdLeaseTest, KeepAliveOutlivesTheTtlAndCloseLetsKeysExpire) {
  std::shared_ptr<Backend> backend = Connect(std::chrono::seconds(2));
  std::string key = prefix_ + "k";
  ASSERT_TRUE(backend->Update(ctx_, key, "v", true).ok());
  // Three TTLs later the key is still there: the keep-alive renewed the lease.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(6);
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_TRUE(backend->Get(ctx_, key)->has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  backend->Close();  // revokes nothing: the key goes with the TTL
  std::shared_ptr<Backend> reader = Connect(std::chrono::seconds(60));
  EXPECT_TRUE(
      Eventually([&] { return !reader->Get(ctx_, key)->has_value(); }, std::chrono::seconds(10)));
}

TEST_F(EtcdLeaseTest, RevokedLeaseCallsObserversAndNextWriteGetsANewLease) {
  Recorder matching, other;  // outlives the backend, whose executor calls them
  std::shared_ptr<Backend> backend = Connect(std::chrono::seconds(3));
  backend->RegisterLeaseExpiredObserver(prefix_ + "a/", matching.Fn());
  backend->RegisterLeaseExpiredObserver("elsewhere/", other.Fn());
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a/1", "v", true).ok());
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a/2", "v", true).ok());
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "b/1", "v", true).ok());
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a/plain", "v", false).ok());
  int64_t lease = LeaseOf(*backend, prefix_ + "a/1");
  ASSERT_GT(lease, 0);

  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, prefix_, 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  ASSERT_EQ(view.keys.size(), 4u);

  ASSERT_TRUE(cluster_->RevokeLease(lease).ok());
  // The keep-alive (every TTL/3) learns that the lease is gone.
  std::multiset<std::string> expected = {prefix_ + "a/1", prefix_ + "a/2"};
  EXPECT_TRUE(Eventually([&] { return matching.Keys() == expected; }, std::chrono::seconds(10)))
      << matching.Keys().size();
  EXPECT_TRUE(other.Keys().empty());
  // Watchers saw the leased keys go, with their last value.
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.keys.size() == 1; }));
  EXPECT_EQ(view.events.back().type, EventType::kDelete);
  EXPECT_EQ(view.events.back().value, "v");

  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "a/1", "v2", true).ok());
  int64_t fresh = LeaseOf(*backend, prefix_ + "a/1");
  EXPECT_GT(fresh, 0);
  EXPECT_NE(fresh, lease);
  watcher->Stop();
  // A removed observer is not called any more.
  backend->RegisterLeaseExpiredObserver(prefix_ + "a/", nullptr);
  ASSERT_TRUE(cluster_->RevokeLease(fresh).ok());
  ASSERT_TRUE(Eventually([&] { return !backend->Get(ctx_, prefix_ + "a/1")->has_value(); }));
  std::this_thread::sleep_for(std::chrono::seconds(2));  // a keep-alive round passes
  EXPECT_EQ(matching.Keys(), expected);
}

TEST_F(EtcdLeaseTest, WriteOnALostLeaseRetriesWithANewOne) {
  // A long TTL: the keep-alive does not notice before the write does.
  Recorder observer;  // outlives the backend, whose executor calls it
  std::shared_ptr<Backend> backend = Connect(std::chrono::seconds(120));
  backend->RegisterLeaseExpiredObserver(prefix_, observer.Fn());
  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "old", "v", true).ok());
  int64_t lease = LeaseOf(*backend, prefix_ + "old");
  ASSERT_TRUE(cluster_->RevokeLease(lease).ok());

  ASSERT_TRUE(backend->Update(ctx_, prefix_ + "new", "v", true).ok());
  int64_t fresh = LeaseOf(*backend, prefix_ + "new");
  EXPECT_GT(fresh, 0);
  EXPECT_NE(fresh, lease);
  EXPECT_TRUE(
      Eventually([&] { return observer.Keys() == std::multiset<std::string>{prefix_ + "old"}; }));

  // UpdateIfDifferent and CreateOnly recover the same way.
  ASSERT_TRUE(cluster_->RevokeLease(fresh).ok());
  auto wrote = backend->UpdateIfDifferent(ctx_, prefix_ + "new", "v", true);
  ASSERT_TRUE(wrote.ok()) << wrote.status();
  EXPECT_TRUE(*wrote);
  int64_t third = LeaseOf(*backend, prefix_ + "new");
  EXPECT_NE(third, fresh);
  ASSERT_TRUE(cluster_->RevokeLease(third).ok());
  auto created = backend->CreateOnly(ctx_, prefix_ + "created", "v", true);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  EXPECT_GT(LeaseOf(*backend, prefix_ + "created"), 0);
}

TEST_F(EtcdLeaseTest, AtMostMaxKeysPerLease) {
  std::shared_ptr<Backend> backend = Connect(std::chrono::seconds(60), 2);
  std::set<int64_t> leases;
  for (int i = 0; i < 5; ++i) {
    std::string key = prefix_ + std::to_string(i);
    ASSERT_TRUE(backend->Update(ctx_, key, "v", true).ok());
    leases.insert(LeaseOf(*backend, key));
  }
  EXPECT_EQ(leases.size(), 3u);
  // Re-writing a key keeps it on its lease.
  std::string first = prefix_ + "0";
  int64_t before = LeaseOf(*backend, first);
  ASSERT_TRUE(backend->Update(ctx_, first, "again", true).ok());
  EXPECT_EQ(LeaseOf(*backend, first), before);
  EXPECT_FALSE(*backend->UpdateIfDifferent(ctx_, first, "again", true));
  EXPECT_NE(backend->Status().message.find("leases=3"), std::string::npos)
      << backend->Status().message;
}

}  // namespace
}  // namespace kvstore::testing

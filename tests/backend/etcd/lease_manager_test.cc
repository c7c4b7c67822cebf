// The LeaseManager over a fake transport and a fake clock: granting, keep-alives, lost leases.
#include "backend/etcd/lease_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kvstore/clock.h"
#include "kvstore/executor.h"
#include "tests/backend/etcd/fake_transport.h"
#include "tests/support/eventually.h"

namespace kvstore::etcd {
namespace {

using kvstore::testing::Eventually;
using testing::FakeTransport;
using testing::KeepAliveAnswer;

constexpr auto kTtl = std::chrono::seconds(30);
constexpr auto kKeepAliveInterval = kTtl / 3;

// Keys an observer was called with, in order.
class RecordedKeys {
 public:
  LeaseManager::Observer Recorder() {
    return [this](std::string_view key) {
      std::lock_guard<std::mutex> guard(mu_);
      keys_.emplace_back(key);
    };
  }
  std::vector<std::string> Keys() const {
    std::lock_guard<std::mutex> guard(mu_);
    return keys_;
  }

 private:
  mutable std::mutex mu_;  // guards keys_
  std::vector<std::string> keys_;
};

class LeaseManagerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    leases_->Shutdown();
    executor_.Shutdown();
  }

  // Returns once every task due by now on the executor has run, the one running included: on a
  // strand, a task posted now runs after those handed over earlier and after the current one.
  void RunDueTasks() {
    auto done = std::make_shared<std::atomic<bool>>(false);
    executor_.Post([done] { *done = true; });
    ASSERT_TRUE(Eventually([&] { return done->load(); }));
  }

  int64_t MustLease(std::string_view key) {
    absl::StatusOr<int64_t> id = leases_->LeaseForKey(Context(), key);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  // The ids of the keep-alive requests written on keep-alive stream `index`.
  std::vector<int64_t> KeepAlivesOn(size_t index) {
    std::vector<int64_t> ids;
    if (auto stream = transport_.KeepAliveStream(index)) {
      for (const auto& request : stream->Requests()) ids.push_back(request.id());
    }
    return ids;
  }

  FakeTransport transport_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  // A strand: a task posted runs after every task handed over before it (timers included).
  Executor executor_{clock_, std::make_shared<Strand>()};
  std::shared_ptr<LeaseManager> leases_ =
      std::make_shared<LeaseManager>(&transport_, &executor_, kTtl, /*max_keys_per_lease=*/1000);
};

TEST_F(LeaseManagerTest, GrantsOnTheFirstLeasedKeyAndSharesTheLease) {
  EXPECT_EQ(transport_.NumLeaseGrants(), 0u);
  const int64_t first = MustLease("k/a");
  EXPECT_EQ(transport_.NumLeaseGrants(), 1u);
  EXPECT_EQ(MustLease("k/b"), first);
  EXPECT_EQ(MustLease("k/a"), first);
  EXPECT_EQ(transport_.NumLeaseGrants(), 1u);
  EXPECT_EQ(leases_->LeaseOfKey("k/a"), first);
  EXPECT_EQ(leases_->LeaseOfKey("k/unknown"), 0);
  leases_->DetachKey("k/a");
  EXPECT_EQ(leases_->LeaseOfKey("k/a"), 0);
  EXPECT_EQ(leases_->LeaseOfKey("k/b"), first);
  leases_->DetachPrefix("k/");
  EXPECT_EQ(leases_->LeaseOfKey("k/b"), 0);
}

TEST_F(LeaseManagerTest, AThousandKeysALeaseThenASecondGrant) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back(MustLease("k/" + std::to_string(i)));
  EXPECT_EQ(transport_.NumLeaseGrants(), 1u);
  for (int64_t id : ids) EXPECT_EQ(id, ids.front());
  const int64_t second = MustLease("k/1000");
  EXPECT_NE(second, ids.front());
  EXPECT_EQ(transport_.NumLeaseGrants(), 2u);
  EXPECT_EQ(leases_->NumLeases(), 2u);
  EXPECT_EQ(MustLease("k/1001"), second);
}

TEST_F(LeaseManagerTest, KeepAliveAtAThirdOfTheTtl) {
  const int64_t id = MustLease("k/a");
  clock_->Advance(kKeepAliveInterval - std::chrono::seconds(1));
  RunDueTasks();
  EXPECT_EQ(transport_.NumKeepAliveStreams(), 0u) << "nothing due before a third of the TTL";

  clock_->Advance(std::chrono::seconds(1));
  ASSERT_TRUE(Eventually([&] { return KeepAlivesOn(0).size() == 1; }));
  RunDueTasks();  // the tick also scheduled the next one
  EXPECT_EQ(KeepAlivesOn(0), std::vector<int64_t>{id});
  transport_.KeepAliveStream(0)->Push(KeepAliveAnswer(id, 30));

  clock_->Advance(kKeepAliveInterval - std::chrono::seconds(1));
  RunDueTasks();
  EXPECT_EQ(KeepAlivesOn(0).size(), 1u);
  clock_->Advance(std::chrono::seconds(1));
  ASSERT_TRUE(Eventually([&] { return KeepAlivesOn(0).size() == 2; }));
  EXPECT_EQ(transport_.NumKeepAliveStreams(), 1u) << "one stream for every keep-alive";
}

// A stream that does not answer a tick's keep-alives by the next tick (its member froze, or the
// connection is cut without either end noticing) is replaced at once, before the lease runs out.
TEST_F(LeaseManagerTest, SilentKeepAliveStreamIsReplaced) {
  const int64_t id = MustLease("k/a");
  clock_->Advance(kKeepAliveInterval);
  ASSERT_TRUE(Eventually([&] { return KeepAlivesOn(0).size() == 1; }));
  RunDueTasks();
  clock_->Advance(kKeepAliveInterval);  // no answer came
  ASSERT_TRUE(Eventually([&] { return KeepAlivesOn(1).size() == 1; }));
  EXPECT_EQ(KeepAlivesOn(1), std::vector<int64_t>{id});
  EXPECT_TRUE(transport_.KeepAliveStream(0)->ended()) << "the silent stream was cancelled";
  EXPECT_EQ(leases_->LeaseOfKey("k/a"), id) << "a silent stream is not a lost lease";
}

TEST_F(LeaseManagerTest, LostKeepAliveStreamIsOpenedAgain) {
  const int64_t id = MustLease("k/a");
  clock_->Advance(kKeepAliveInterval);
  ASSERT_TRUE(Eventually([&] { return KeepAlivesOn(0).size() == 1; }));
  RunDueTasks();  // the tick also scheduled the next one
  transport_.KeepAliveStream(0)->End(absl::UnavailableError("connection reset"));

  clock_->Advance(kKeepAliveInterval);
  ASSERT_TRUE(Eventually([&] { return KeepAlivesOn(1).size() == 1; }));
  EXPECT_EQ(KeepAlivesOn(1), std::vector<int64_t>{id});
  EXPECT_EQ(leases_->LeaseOfKey("k/a"), id) << "a lost stream is not a lost lease";
  EXPECT_EQ(transport_.NumLeaseGrants(), 1u);
}

TEST_F(LeaseManagerTest, ExpiredAnswerReportsTheLeaseKeysAndTheNextWriteGetsANewLease) {
  RecordedKeys watched, other, unrelated;
  leases_->SetObserver("p/", watched.Recorder());
  leases_->SetObserver("o/", other.Recorder());
  leases_->SetObserver("z/", unrelated.Recorder());
  const int64_t id = MustLease("p/a");
  MustLease("p/b");
  MustLease("o/x");
  clock_->Advance(kKeepAliveInterval);
  ASSERT_TRUE(Eventually([&] { return KeepAlivesOn(0).size() == 1; }));

  transport_.KeepAliveStream(0)->Push(KeepAliveAnswer(id, 0));  // expired or revoked
  ASSERT_TRUE(Eventually([&] { return watched.Keys().size() == 2 && other.Keys().size() == 1; }));
  EXPECT_EQ(watched.Keys(), (std::vector<std::string>{"p/a", "p/b"}));
  EXPECT_EQ(other.Keys(), std::vector<std::string>{"o/x"});
  EXPECT_TRUE(unrelated.Keys().empty());
  EXPECT_EQ(leases_->LeaseOfKey("p/a"), 0);
  EXPECT_EQ(leases_->NumLeases(), 0u);

  const int64_t renewed = MustLease("p/a");
  EXPECT_NE(renewed, id);
  EXPECT_EQ(transport_.NumLeaseGrants(), 2u);
}

TEST_F(LeaseManagerTest, LeaseNotFoundReportsTheLeaseKeys) {
  // What the backend does when a write answers "requested lease not found".
  RecordedKeys watched;
  leases_->SetObserver("p/", watched.Recorder());
  const int64_t id = MustLease("p/a");
  leases_->OnLeaseLost(id, "etcdserver: requested lease not found");
  ASSERT_TRUE(Eventually([&] { return watched.Keys().size() == 1; }));
  EXPECT_EQ(watched.Keys(), std::vector<std::string>{"p/a"});
  EXPECT_NE(MustLease("p/a"), id);
  EXPECT_EQ(transport_.NumLeaseGrants(), 2u);
}

TEST_F(LeaseManagerTest, AnswerThatTheLeaseLivesKeepsIt) {
  RecordedKeys watched;
  leases_->SetObserver("p/", watched.Recorder());
  const int64_t id = MustLease("p/a");
  clock_->Advance(kKeepAliveInterval);
  ASSERT_TRUE(Eventually([&] { return KeepAlivesOn(0).size() == 1; }));
  transport_.KeepAliveStream(0)->Push(KeepAliveAnswer(id, kTtl.count()));
  RunDueTasks();
  EXPECT_TRUE(watched.Keys().empty());
  EXPECT_EQ(leases_->LeaseOfKey("p/a"), id);
}

TEST_F(LeaseManagerTest, ShutdownFailsLaterGrantsAndStopsKeepAlives) {
  MustLease("k/a");
  leases_->Shutdown();
  EXPECT_EQ(leases_->LeaseForKey(Context(), "k/b").status().code(),
            absl::StatusCode::kFailedPrecondition);
  clock_->Advance(kKeepAliveInterval);
  RunDueTasks();
  EXPECT_EQ(transport_.NumKeepAliveStreams(), 0u);
}

}  // namespace
}  // namespace kvstore::etcd

#include "kvstore/backend_metrics.h"

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/memory/in_memory_store.h"
#include "prometheus/registry.h"
#include "tests/support/eventually.h"
#include "tests/support/metrics_reader.h"

namespace kvstore::memory {
namespace {

using ::kvstore::testing::Eventually;
using ::kvstore::testing::ReadHistogramSum;
using ::kvstore::testing::ReadMetric;
using namespace std::chrono_literals;

constexpr char kPrefix[] = "cilium/state/nodes/v1/";
constexpr char kScope[] = "nodes/v1";
constexpr char kOperations[] = "cilium_kvstore_operations_duration_seconds";
constexpr char kEventsQueue[] = "cilium_kvstore_events_queue_seconds";
constexpr char kLeases[] = "cilium_kvstore_leases";

class BackendMetricsTest : public ::testing::Test {
 protected:
  std::shared_ptr<InMemoryStore> NewStore(size_t max_keys_per_lease = 1000) {
    InMemoryOptions options;
    options.metrics = metrics_;
    options.max_keys_per_lease = max_keys_per_lease;
    return InMemoryStore::Create(options);
  }

  // Samples of the operation series, 0 when it does not exist.
  double Operations(const std::string& kind, const std::string& action, const std::string& outcome,
                    const std::string& scope = kScope) const {
    return ReadMetric(registry_, kOperations,
                      {{"scope", scope}, {"kind", kind}, {"action", action}, {"outcome", outcome}})
        .value_or(0);
  }
  double QueuedEvents(const std::string& action) const {
    return ReadMetric(registry_, kEventsQueue, {{"scope", kScope}, {"action", action}}).value_or(0);
  }
  std::optional<double> Leases() const { return ReadMetric(registry_, kLeases, {}); }

  prometheus::Registry registry_;
  std::shared_ptr<BackendMetrics> metrics_ = std::make_shared<BackendMetrics>(registry_);
};

std::string Key(const std::string& name) { return kPrefix + name; }

TEST_F(BackendMetricsTest, EveryOperationIsTimedWithScopeKindActionAndOutcome) {
  auto store = NewStore();
  auto client = store->NewClient("a");
  const Context ctx;
  ASSERT_TRUE(client->Update(ctx, Key("a"), "1", true).ok());
  ASSERT_TRUE(client->Update(ctx, Key("b"), "1", false).ok());
  ASSERT_TRUE(client->UpdateIfDifferent(ctx, Key("a"), "2", true).ok());
  ASSERT_TRUE(client->CreateOnly(ctx, Key("c"), "1", false).ok());
  ASSERT_TRUE(client->Get(ctx, Key("a")).ok());
  ASSERT_TRUE(client->ListPrefix(ctx, kPrefix).ok());
  ASSERT_TRUE(client->Delete(ctx, Key("b")).ok());
  ASSERT_TRUE(client->DeletePrefix(ctx, kPrefix).ok());

  EXPECT_EQ(Operations("set", "Update", "success"), 2);
  EXPECT_EQ(Operations("set", "UpdateIfDifferent", "success"), 1);
  EXPECT_EQ(Operations("set", "CreateOnly", "success"), 1);
  EXPECT_EQ(Operations("read", "Get", "success"), 1);
  EXPECT_EQ(Operations("read", "ListPrefix", "success"), 1);
  EXPECT_EQ(Operations("delete", "Delete", "success"), 1);
  EXPECT_EQ(Operations("delete", "DeletePrefix", "success"), 1);
  EXPECT_EQ(Operations("set", "Update", "fail"), 0);
}

TEST_F(BackendMetricsTest, FailedOperationsCountAsFailWithTheKeysScope) {
  auto store = NewStore();
  auto client = store->NewClient("a");
  const std::string too_large(kMaxValueBytes + 1, 'x');
  EXPECT_FALSE(client->Update(Context(), Key("a"), too_large, false).ok());
  EXPECT_FALSE(client->Update(Context(), "cilium/state/services/v1/x", too_large, false).ok());
  client->Close();
  EXPECT_FALSE(client->Get(Context(), Key("a")).ok());

  EXPECT_EQ(Operations("set", "Update", "fail"), 1);
  EXPECT_EQ(Operations("set", "Update", "fail", "services/v1"), 1);
  EXPECT_EQ(Operations("read", "Get", "fail"), 1);
  EXPECT_EQ(Operations("set", "Update", "success"), 0);
}

TEST_F(BackendMetricsTest, ABatchIsOneObservationFailingWhenAnyWriteFailed) {
  auto store = NewStore();
  auto client = store->NewClient("a");
  const std::string too_large(kMaxValueBytes + 1, 'x');
  const std::string key_a = Key("a"), key_b = Key("b"), key_c = Key("c");
  const WriteOp good[] = {{key_a, "v", true}, {key_b, std::nullopt, false}};
  const WriteOp bad[] = {{key_c, "v", false}, {key_a, too_large, false}};
  EXPECT_TRUE(client->ApplyBatch(Context(), good)[0].ok());
  EXPECT_FALSE(client->ApplyBatch(Context(), bad)[1].ok());

  EXPECT_EQ(Operations("batch", "ApplyBatch", "success"), 1);
  EXPECT_EQ(Operations("batch", "ApplyBatch", "fail"), 1);
}

TEST_F(BackendMetricsTest, EventsQueueTimeCountsEveryEventByTypeAndIncludesTheConsumersDelay) {
  auto store = NewStore();
  auto client = store->NewClient("a");
  const Context ctx;
  ASSERT_TRUE(client->Update(ctx, Key("a"), "1", false).ok());
  ASSERT_TRUE(client->Update(ctx, Key("b"), "1", false).ok());

  // Capacity 1: the second listed key waits for the consumer's first read.
  auto watcher = client->ListAndWatch(ctx, kPrefix, 1);
  ASSERT_TRUE(Eventually([&] { return QueuedEvents("create") == 1; }));
  std::this_thread::sleep_for(50ms);  // the delay being measured, not a synchronisation
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(watcher->NextFor(10s).has_value());  // a, b, list-done
  ASSERT_TRUE(client->Update(ctx, Key("a"), "2", false).ok());
  ASSERT_TRUE(client->Delete(ctx, Key("b")).ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(watcher->NextFor(10s).has_value());
  watcher->Stop();

  // Each is recorded by the delivering task just after the watcher took the event.
  EXPECT_TRUE(Eventually([&] { return QueuedEvents("delete") == 1; }));
  EXPECT_EQ(QueuedEvents("create"), 2);
  EXPECT_EQ(QueuedEvents("list-done"), 1);
  EXPECT_EQ(QueuedEvents("modify"), 1);
  EXPECT_EQ(QueuedEvents("delete"), 1);
  EXPECT_GE(ReadHistogramSum(registry_, kEventsQueue, {{"scope", kScope}, {"action", "create"}})
                .value_or(0),
            0.05);
}

TEST_F(BackendMetricsTest, LeaseGaugeCountsTheLeasesOfLiveSessions) {
  auto store = NewStore(/*max_keys_per_lease=*/2);
  auto a = store->NewClient("a");
  auto b = store->NewClient("b");
  const Context ctx;
  EXPECT_EQ(Leases().value_or(0), 0);
  for (const char* name : {"a1", "a2", "a3"})
    ASSERT_TRUE(a->Update(ctx, Key(name), "v", true).ok());
  EXPECT_EQ(Leases(), 2) << "three keys, two a lease";
  ASSERT_TRUE(b->Update(ctx, Key("b1"), "v", true).ok());
  ASSERT_TRUE(b->Update(ctx, Key("b2"), "v", false).ok());
  EXPECT_EQ(Leases(), 3);

  // A lost lease is no longer held; the next leased write holds a new one.
  store->ExpireSession(*a);
  EXPECT_EQ(Leases(), 1);
  EXPECT_FALSE(a->Get(ctx, Key("a1"))->has_value()) << "ExpireSession must reach a metered client";
  ASSERT_TRUE(a->Update(ctx, Key("a1"), "v", true).ok());
  EXPECT_EQ(Leases(), 2);

  // A closed client keeps nothing alive.
  b->Close();
  EXPECT_EQ(Leases(), 1);
  a.reset();
  EXPECT_EQ(Leases(), 0);
}

}  // namespace
}  // namespace kvstore::memory

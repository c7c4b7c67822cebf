#include "kvstore/store/metrics.h"

#include <memory>

#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "tests/support/metrics_reader.h"

namespace kvstore::store {
namespace {

using ::kvstore::testing::ReadMetric;

TEST(MetricsTest, RegistersCiliumNamesAndLabels) {
  prometheus::Registry registry;
  auto metrics = std::make_shared<Metrics>(registry);
  metrics->SyncQueueSize("nodes/v1", "c1").Set(3);
  metrics->SyncErrors("nodes/v1", "c1").Increment();
  metrics->InitialSyncCompleted("nodes/v1", "c1", "write").Set(1);
  metrics->InitialSyncCompleted("nodes/v1", "c1", "read").Set(0);
  metrics->OperationDuration("nodes/v1", "etcd", "Update", "success").Observe(0.002);
  metrics->EventsQueueTime("nodes/v1", "create").Observe(0.001);
  metrics->Leases().Set(2);

  EXPECT_EQ(ReadMetric(registry, "cilium_kvstore_sync_queue_size",
                       {{"scope", "nodes/v1"}, {"source_cluster", "c1"}}),
            3);
  EXPECT_EQ(ReadMetric(registry, "cilium_kvstore_sync_errors_total",
                       {{"scope", "nodes/v1"}, {"source_cluster", "c1"}}),
            1);
  EXPECT_EQ(ReadMetric(registry, "cilium_kvstore_initial_sync_completed",
                       {{"scope", "nodes/v1"}, {"source_cluster", "c1"}, {"action", "write"}}),
            1);
  EXPECT_EQ(ReadMetric(registry, "cilium_kvstore_initial_sync_completed",
                       {{"scope", "nodes/v1"}, {"source_cluster", "c1"}, {"action", "read"}}),
            0);
  EXPECT_EQ(
      ReadMetric(
          registry, "cilium_kvstore_operations_duration_seconds",
          {{"scope", "nodes/v1"}, {"kind", "etcd"}, {"action", "Update"}, {"outcome", "success"}}),
      1);
  EXPECT_EQ(ReadMetric(registry, "cilium_kvstore_events_queue_seconds",
                       {{"scope", "nodes/v1"}, {"action", "create"}}),
            1);
  EXPECT_EQ(ReadMetric(registry, "cilium_kvstore_leases", {}), 2);
}

TEST(MetricsTest, SameLabelsShareOneSeries) {
  prometheus::Registry registry;
  Metrics metrics(registry);
  EXPECT_EQ(&metrics.SyncQueueSize("a/b", "c"), &metrics.SyncQueueSize("a/b", "c"));
  EXPECT_NE(&metrics.SyncQueueSize("a/b", "c"), &metrics.SyncQueueSize("a/b", "d"));
}

TEST(MetricsTest, TwoInstancesOnOneRegistryShareFamilies) {
  prometheus::Registry registry;
  Metrics first(registry);
  Metrics second(registry);
  first.SyncErrors("a/b", "c").Increment();
  second.SyncErrors("a/b", "c").Increment();
  EXPECT_EQ(ReadMetric(registry, "cilium_kvstore_sync_errors_total",
                       {{"scope", "a/b"}, {"source_cluster", "c"}}),
            2);
}

}  // namespace
}  // namespace kvstore::store

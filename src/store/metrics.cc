#include "kvstore/store/metrics.h"

#include <string>

namespace kvstore::store {
Metrics::Metrics(prometheus::Registry& registry)
    : BackendMetrics(registry),
      sync_queue_size_(prometheus::BuildGauge()
                           .Name("cilium_kvstore_sync_queue_size")
                           .Help("Number of elements queued for synchronization in the kvstore")
                           .Register(registry)),
      sync_errors_(prometheus::BuildCounter()
                       .Name("cilium_kvstore_sync_errors_total")
                       .Help("Number of times synchronization to the kvstore failed")
                       .Register(registry)),
      initial_sync_completed_(
          prometheus::BuildGauge()
              .Name("cilium_kvstore_initial_sync_completed")
              .Help("Whether the initial synchronization from/to the kvstore has completed")
              .Register(registry)) {}

// Family::Add returns the existing series when the labels are already known, so every store
// with the same labels shares one series.
prometheus::Gauge& Metrics::SyncQueueSize(std::string_view scope, std::string_view source_cluster) {
  return sync_queue_size_.Add(
      {{"scope", std::string(scope)}, {"source_cluster", std::string(source_cluster)}});
}

prometheus::Counter& Metrics::SyncErrors(std::string_view scope, std::string_view source_cluster) {
  return sync_errors_.Add(
      {{"scope", std::string(scope)}, {"source_cluster", std::string(source_cluster)}});
}

prometheus::Gauge& Metrics::InitialSyncCompleted(std::string_view scope,
                                                 std::string_view source_cluster,
                                                 std::string_view action) {
  return initial_sync_completed_.Add({{"scope", std::string(scope)},
                                      {"source_cluster", std::string(source_cluster)},
                                      {"action", std::string(action)}});
}

}  // namespace kvstore::store

// The store and backend metrics, with Cilium's names, over one prometheus-cpp registry.
#ifndef KVSTORE_STORE_METRICS_H_
#define KVSTORE_STORE_METRICS_H_

#include <string>
#include <string_view>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace kvstore::store {

// Create once per registry (`std::make_shared<Metrics>(registry)`) and share between stores.
// REQUIRES: `registry` outlives this object.
class Metrics {
 public:
  explicit Metrics(prometheus::Registry& registry);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // cilium_kvstore_sync_queue_size{scope,source_cluster}: keys waiting in a SyncStore's queue.
  prometheus::Gauge& SyncQueueSize(std::string_view scope, std::string_view source_cluster);
  // cilium_kvstore_sync_errors_total{scope,source_cluster}: failed SyncStore writes.
  prometheus::Counter& SyncErrors(std::string_view scope, std::string_view source_cluster);
  // cilium_kvstore_initial_sync_completed{scope,source_cluster,action}: 1 once the first sync is
  // done (action "write" for SyncStore, "read" for WatchStore), 0 again when Run/Watch ends.
  prometheus::Gauge& InitialSyncCompleted(std::string_view scope, std::string_view source_cluster,
                                          std::string_view action);
  // cilium_kvstore_operations_duration_seconds{scope,kind,action,outcome}
  prometheus::Histogram& OperationDuration(std::string_view scope, std::string_view kind,
                                           std::string_view action, std::string_view outcome);
  // cilium_kvstore_events_queue_seconds{scope,action}: time a watch event waited to be handled.
  prometheus::Histogram& EventsQueueTime(std::string_view scope, std::string_view action);
  // cilium_kvstore_leases{}: leases held by backends reporting here.
  prometheus::Gauge& Leases();

 private:
  prometheus::Family<prometheus::Gauge>& sync_queue_size_;
  prometheus::Family<prometheus::Counter>& sync_errors_;
  prometheus::Family<prometheus::Gauge>& initial_sync_completed_;
  prometheus::Family<prometheus::Histogram>& operations_duration_;
  prometheus::Family<prometheus::Histogram>& events_queue_;
  prometheus::Family<prometheus::Gauge>& leases_;
};

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_METRICS_H_

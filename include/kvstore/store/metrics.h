// The store and backend metrics, with Cilium's names, over one prometheus-cpp registry.
#ifndef KVSTORE_STORE_METRICS_H_
#define KVSTORE_STORE_METRICS_H_

#include <string>
#include <string_view>

#include "kvstore/backend_metrics.h"
#include "kvstore/export.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace kvstore::store {

// Create once per registry (`std::make_shared<Metrics>(registry)`) and share between stores and
// backends (their options take it as the BackendMetrics it is). REQUIRES: `registry` outlives
// this object. Thread-safe.
class KVSTORE_EXPORT Metrics : public BackendMetrics {
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

 private:
  prometheus::Family<prometheus::Gauge>& sync_queue_size_;
  prometheus::Family<prometheus::Counter>& sync_errors_;
  prometheus::Family<prometheus::Gauge>& initial_sync_completed_;
};

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_METRICS_H_

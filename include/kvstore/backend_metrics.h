// The metrics every backend records, with Cilium's names, over one prometheus-cpp registry.
// kvstore::store::Metrics adds the store layer's metrics to these; a backend needs only this part,
// so backends do not depend on the store layer.
#ifndef KVSTORE_BACKEND_METRICS_H_
#define KVSTORE_BACKEND_METRICS_H_

#include <string_view>

#include "kvstore/export.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace kvstore {

// Registers the backend metrics in `registry`. Usually created as part of a store::Metrics and
// shared through std::shared_ptr by every backend and store reporting to one registry.
// REQUIRES: `registry` outlives this object. Thread-safe.
class KVSTORE_EXPORT BackendMetrics {
 public:
  explicit BackendMetrics(prometheus::Registry& registry);
  BackendMetrics(const BackendMetrics&) = delete;
  BackendMetrics& operator=(const BackendMetrics&) = delete;
  virtual ~BackendMetrics() = default;

  // cilium_kvstore_operations_duration_seconds{scope,kind,action,outcome}
  prometheus::Histogram& OperationDuration(std::string_view scope, std::string_view kind,
                                           std::string_view action, std::string_view outcome);
  // cilium_kvstore_events_queue_seconds{scope,action}: time a watch event waited to be handled.
  prometheus::Histogram& EventsQueueTime(std::string_view scope, std::string_view action);
  // cilium_kvstore_leases{}: leases held by backends reporting here.
  prometheus::Gauge& Leases();
  // cilium_kvstore_watchers_stalled{scope}: watchers whose watch etcd refuses to resume (after
  // logging in anew: a permission taken away, credentials no longer valid). They keep retrying.
  prometheus::Gauge& WatchersStalled(std::string_view scope);
  // cilium_kvstore_watch_restarts_total{scope,reason}: watches subscribed again, by reason:
  // "stream_loss", "compaction", "auth", "unanswered" (etcd did not answer a watch request),
  // "flow_control" (the consumer fell behind).
  prometheus::Counter& WatchRestarts(std::string_view scope, std::string_view reason);
  // cilium_kvstore_watch_last_heard_timestamp_seconds{scope}: when a watch of the scope last
  // heard from the backend (an event, a progress notification, the end of its list), as Unix
  // time; the age of a watch's view is now minus this.
  prometheus::Gauge& WatchLastHeard(std::string_view scope);
  // cilium_kvstore_list_pages_total{scope}: pages fetched by watches' lists (re-lists included).
  prometheus::Counter& ListPages(std::string_view scope);

 private:
  prometheus::Family<prometheus::Histogram>& operations_duration_;
  prometheus::Family<prometheus::Histogram>& events_queue_;
  prometheus::Family<prometheus::Gauge>& leases_;
  prometheus::Family<prometheus::Gauge>& watchers_stalled_;
  prometheus::Family<prometheus::Counter>& watch_restarts_;
  prometheus::Family<prometheus::Gauge>& watch_last_heard_;
  prometheus::Family<prometheus::Counter>& list_pages_;
};

}  // namespace kvstore

#endif  // KVSTORE_BACKEND_METRICS_H_

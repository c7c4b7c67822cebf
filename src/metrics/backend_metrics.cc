#include "kvstore/backend_metrics.h"

#include <string>

namespace kvstore {
namespace {

// Latency of a round trip to etcd: from a fraction of a millisecond to many seconds when a
// request waits for a quorum that is being re-elected.
const prometheus::Histogram::BucketBoundaries& OperationBuckets() {
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return *kBuckets;
}

// Time a watch event waits before it is handed on: usually well below a millisecond, seconds
// when a consumer falls behind.
const prometheus::Histogram::BucketBoundaries& EventsQueueBuckets() {
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 5};
  return *kBuckets;
}

}  // namespace

BackendMetrics::BackendMetrics(prometheus::Registry& registry)
    : operations_duration_(prometheus::BuildHistogram()
                               .Name("cilium_kvstore_operations_duration_seconds")
                               .Help("Duration in seconds of kvstore operations")
                               .Register(registry)),
      events_queue_(prometheus::BuildHistogram()
                        .Name("cilium_kvstore_events_queue_seconds")
                        .Help("Seconds waited before a received event was queued")
                        .Register(registry)),
      leases_(prometheus::BuildGauge()
                  .Name("cilium_kvstore_leases")
                  .Help("Number of kvstore leases currently held")
                  .Register(registry)),
      watchers_stalled_(prometheus::BuildGauge()
                            .Name("cilium_kvstore_watchers_stalled")
                            .Help("Number of watchers whose watch etcd refuses to resume")
                            .Register(registry)),
      watch_restarts_(prometheus::BuildCounter()
                          .Name("cilium_kvstore_watch_restarts_total")
                          .Help("Number of watches subscribed again, by reason")
                          .Register(registry)),
      watch_last_heard_(prometheus::BuildGauge()
                            .Name("cilium_kvstore_watch_last_heard_timestamp_seconds")
                            .Help("Unix time when a watch last heard from the kvstore (an "
                                  "event, a progress notification, the end of its list)")
                            .Register(registry)),
      list_pages_(prometheus::BuildCounter()
                      .Name("cilium_kvstore_list_pages_total")
                      .Help("Number of list pages fetched by watches")
                      .Register(registry)) {}

// Family::Add returns the existing series when the labels are already known, so every backend
// with the same labels shares one series.
prometheus::Histogram& BackendMetrics::OperationDuration(std::string_view scope,
                                                         std::string_view kind,
                                                         std::string_view action,
                                                         std::string_view outcome) {
  return operations_duration_.Add({{"scope", std::string(scope)},
                                   {"kind", std::string(kind)},
                                   {"action", std::string(action)},
                                   {"outcome", std::string(outcome)}},
                                  OperationBuckets());
}

prometheus::Histogram& BackendMetrics::EventsQueueTime(std::string_view scope,
                                                       std::string_view action) {
  return events_queue_.Add({{"scope", std::string(scope)}, {"action", std::string(action)}},
                           EventsQueueBuckets());
}

prometheus::Gauge& BackendMetrics::Leases() { return leases_.Add({}); }

prometheus::Gauge& BackendMetrics::WatchersStalled(std::string_view scope) {
  return watchers_stalled_.Add({{"scope", std::string(scope)}});
}

prometheus::Counter& BackendMetrics::WatchRestarts(std::string_view scope,
                                                   std::string_view reason) {
  return watch_restarts_.Add({{"scope", std::string(scope)}, {"reason", std::string(reason)}});
}

prometheus::Gauge& BackendMetrics::WatchLastHeard(std::string_view scope) {
  return watch_last_heard_.Add({{"scope", std::string(scope)}});
}

prometheus::Counter& BackendMetrics::ListPages(std::string_view scope) {
  return list_pages_.Add({{"scope", std::string(scope)}});
}

}  // namespace kvstore

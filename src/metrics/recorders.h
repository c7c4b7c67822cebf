// What backends record into kvstore::BackendMetrics: the duration and outcome of every operation,
// the time watch events wait before their watcher takes them, and the leases held. Private to the
// backends; every recorder does nothing when built without metrics.
#ifndef KVSTORE_METRICS_RECORDERS_H_
#define KVSTORE_METRICS_RECORDERS_H_

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "kvstore/backend.h"
#include "kvstore/backend_metrics.h"
#include "kvstore/events.h"

namespace kvstore::internal {

// `backend` with every operation timed into cilium_kvstore_operations_duration_seconds
// {scope = GetScopeFromKey(key or prefix), kind "read" | "set" | "delete" | "batch", action the
// method's name ("Get", "Update", ...), outcome "success" | "fail"}, as Cilium's etcd client does.
// A batch is one request: one observation, under its first key's scope, "fail" if any write failed.
// Returns `backend` itself when `metrics` is null.
std::shared_ptr<Backend> WithOperationMetrics(std::shared_ptr<Backend> backend,
                                              std::shared_ptr<BackendMetrics> metrics);

// cilium_kvstore_events_queue_seconds{scope, action = EventTypeName}: how long each event of one
// watcher waited between the backend receiving it and the watcher accepting it. Thread-compatible:
// one per watcher, used by whoever delivers its events.
class EventsQueueRecorder {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  EventsQueueRecorder() = default;
  // `prefix` is the watched prefix: every event of the watcher has its scope.
  EventsQueueRecorder(BackendMetrics* metrics, std::string_view prefix);

  bool enabled() const { return metrics_ != nullptr; }
  // When an event was received: now when enabled, else a zero time (no clock read).
  TimePoint Received() const { return enabled() ? std::chrono::steady_clock::now() : TimePoint(); }
  // The event of `type` received at `received` was accepted by the watcher now.
  void Accepted(EventType type, TimePoint received);

 private:
  BackendMetrics* metrics_ = nullptr;
  std::string scope_;
  std::array<prometheus::Histogram*, 4> histograms_{};  // by EventType, created on first use
};

// cilium_kvstore_leases: every backend reporting to one Metrics adds the leases it holds (granted
// and kept alive) and takes away those it lost or stopped keeping alive.
class LeaseGauge {
 public:
  explicit LeaseGauge(BackendMetrics* metrics)
      : gauge_(metrics == nullptr ? nullptr : &metrics->Leases()) {}

  void Add(double leases) const {
    if (gauge_ != nullptr) gauge_->Increment(leases);
  }
  void Remove(double leases) const {
    if (gauge_ != nullptr) gauge_->Decrement(leases);
  }

 private:
  prometheus::Gauge* gauge_;
};

}  // namespace kvstore::internal

#endif  // KVSTORE_METRICS_RECORDERS_H_

#include "mesh/mesh_metrics.h"

#include <utility>

namespace kvstore::mesh::internal {
namespace {

prometheus::Family<prometheus::Gauge>* Gauge(prometheus::Registry* registry,
                                             const std::string& name, const std::string& help) {
  if (registry == nullptr) return nullptr;
  return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry);
}

}  // namespace

MeshMetrics::MeshMetrics(prometheus::Registry* registry, const std::string& metrics_namespace,
                         std::string local_cluster)
    : local_cluster_(std::move(local_cluster)),
      remote_clusters_(Gauge(registry, metrics_namespace + "_remote_clusters",
                             "The total number of remote clusters meshed with the local cluster")),
      failures_(Gauge(registry, metrics_namespace + "_remote_cluster_failures",
                      "The total number of failures related to the remote cluster")),
      last_failure_ts_(Gauge(registry, metrics_namespace + "_remote_cluster_last_failure_ts",
                             "The timestamp of the last failure of the remote cluster")),
      readiness_(Gauge(registry, metrics_namespace + "_remote_cluster_readiness_status",
                       "The readiness status of the remote cluster")) {
  SetRemoteClusters(0);
}

prometheus::Labels MeshMetrics::LabelsOf(std::string_view cluster) const {
  return {{"source_cluster", local_cluster_},
          {"source_node_name", ""},
          {"target_cluster", std::string(cluster)}};
}

void MeshMetrics::SetRemoteClusters(size_t count) {
  if (remote_clusters_ == nullptr) return;
  remote_clusters_->Add({{"source_cluster", local_cluster_}, {"source_node_name", ""}})
      .Set(static_cast<double>(count));
}

void MeshMetrics::SetReady(std::string_view cluster, bool ready) {
  if (readiness_ == nullptr) return;
  readiness_->Add(LabelsOf(cluster)).Set(ready ? 1 : 0);
}

void MeshMetrics::SetFailures(std::string_view cluster, uint64_t failures,
                              std::chrono::system_clock::time_point last_failure) {
  if (failures_ == nullptr) return;
  failures_->Add(LabelsOf(cluster)).Set(static_cast<double>(failures));
  last_failure_ts_->Add(LabelsOf(cluster))
      .Set(std::chrono::duration<double>(last_failure.time_since_epoch()).count());
}

void MeshMetrics::Forget(std::string_view cluster) {
  if (readiness_ == nullptr) return;
  const prometheus::Labels labels = LabelsOf(cluster);
  for (auto* family : {failures_, last_failure_ts_, readiness_}) {
    if (family->Has(labels)) family->Remove(&family->Add(labels));
  }
}

}  // namespace kvstore::mesh::internal

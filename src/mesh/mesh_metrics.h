// The mesh's own gauges, with the names and labels of Cilium's clustermesh (common/metrics.go):
// <namespace>_remote_clusters{source_cluster,source_node_name} and
// <namespace>_remote_cluster_{failures,last_failure_ts,readiness_status}{source_cluster,
// source_node_name,target_cluster}. source_cluster is the local cluster, target_cluster the remote
// one; source_node_name is empty, as with kvstoremesh.
#ifndef KVSTORE_MESH_MESH_METRICS_H_
#define KVSTORE_MESH_MESH_METRICS_H_

#include <chrono>
#include <string>
#include <string_view>

#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace kvstore::mesh::internal {

// Every method does nothing when built without a registry. Thread-safe.
class MeshMetrics {
 public:
  // `registry` may be null. REQUIRES: it outlives this object.
  MeshMetrics(prometheus::Registry* registry, const std::string& metrics_namespace,
              std::string local_cluster);
  MeshMetrics(const MeshMetrics&) = delete;
  MeshMetrics& operator=(const MeshMetrics&) = delete;

  void SetRemoteClusters(size_t count);
  void SetReady(std::string_view cluster, bool ready);
  void SetFailures(std::string_view cluster, uint64_t failures,
                   std::chrono::system_clock::time_point last_failure);
  // Drops the cluster's series (it was removed).
  void Forget(std::string_view cluster);

 private:
  prometheus::Labels LabelsOf(std::string_view cluster) const;

  const std::string local_cluster_;
  prometheus::Family<prometheus::Gauge>* remote_clusters_ = nullptr;
  prometheus::Family<prometheus::Gauge>* failures_ = nullptr;
  prometheus::Family<prometheus::Gauge>* last_failure_ts_ = nullptr;
  prometheus::Family<prometheus::Gauge>* readiness_ = nullptr;
};

}  // namespace kvstore::mesh::internal

#endif  // KVSTORE_MESH_MESH_METRICS_H_

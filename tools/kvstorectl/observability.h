// Logs and metrics for the long-running commands (agent, mesh).
#ifndef KVSTORE_TOOLS_KVSTORECTL_OBSERVABILITY_H_
#define KVSTORE_TOOLS_KVSTORECTL_OBSERVABILITY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kvstore/store/metrics.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace kvstorectl {

// Sets spdlog's level ("trace".."off") and format ("text", or "json": one object a line with
// time, level, logger and msg; the message is escaped). Logs go to stderr.
void ConfigureLogging(const std::string& level, const std::string& format);

// A Prometheus registry with the store metrics, served over HTTP at /metrics.
class MetricsServer {
 public:
  // `listen` is "host:port"; port 0 picks a free one (see Port()). Binds where told: callers keep
  // the default on loopback.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen);

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<kvstore::store::Metrics> metrics() { return metrics_; }
  int Port() const;

 private:
  MetricsServer() = default;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<kvstore::store::Metrics> metrics_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_OBSERVABILITY_H_

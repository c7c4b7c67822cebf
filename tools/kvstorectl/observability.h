// Logs, metrics and health endpoints for the long-running commands (agent, mesh).
#ifndef KVSTORE_TOOLS_KVSTORECTL_OBSERVABILITY_H_
#define KVSTORE_TOOLS_KVSTORECTL_OBSERVABILITY_H_

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "health.h"
#include "kvstore/mutex.h"
#include "kvstore/store/metrics.h"
#include "nlohmann/json.hpp"
#include "prometheus/registry.h"

class CivetHandler;
class CivetServer;

namespace kvstorectl {

// Sets spdlog's level ("trace".."off") and format ("text", or "json": one object a line with
// time, level, logger and msg; the message is escaped). Logs go to stderr.
void ConfigureLogging(const std::string& level, const std::string& format);

// An HTTP server (civetweb, as prometheus-cpp's Exposer uses, whose 1.0 API cannot serve other
// paths) with a Prometheus registry holding the store metrics at /metrics, the command's health
// at /healthz and /readyz, and its status as one JSON object at /status.
class MetricsServer {
 public:
  // `listen` is "host:port"; port 0 picks a free one (see Port()). Binds where told: callers keep
  // the default on loopback.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen);
  ~MetricsServer();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<kvstore::store::Metrics> metrics() { return metrics_; }
  int Port() const;

  // /healthz and /readyz answer from these checks from now on. Until then /healthz answers
  // 200 "starting" and /readyz 503 "starting".
  void SetHealthChecks(HealthCheck liveness, HealthCheck readiness);
  // /status answers 200 with what `status` returns (a JSON object) from now on; until then 503
  // "starting".
  using StatusReport = std::function<nlohmann::json()>;
  void SetStatusReport(StatusReport status);
  // From now on the probes and /status answer 503 "stopping"; returns once no check runs any
  // more, so that what the checks use may go away.
  void StopHealthChecks();

 private:
  class Handler;
  enum class Probe { kLiveness, kReadiness };

  MetricsServer() = default;
  HealthReport RunCheck(Probe probe);
  // /status: the report, or why there is none (ok false).
  HealthReport RunStatus();

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<kvstore::store::Metrics> metrics_;
  // Held while a check runs (StopHealthChecks waits for it). A kvstore::Mutex for the thread
  // sanitizer, as in Readiness (health.h).
  kvstore::Mutex mu_;
  HealthCheck liveness_ ABSL_GUARDED_BY(mu_);
  HealthCheck readiness_ ABSL_GUARDED_BY(mu_);
  StatusReport status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Declared before server_, which calls them until it is destroyed.
  std::vector<std::unique_ptr<CivetHandler>> handlers_;
  std::unique_ptr<CivetServer> server_;
};

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_OBSERVABILITY_H_

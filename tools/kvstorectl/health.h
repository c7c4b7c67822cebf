// What the long-running commands (agent, mesh) answer at /healthz and /readyz on
// --metrics-listen, as Kubernetes probes expect: 200 when healthy or ready, 503 when not, and the
// reasons in the body, one a line.
#ifndef KVSTORE_TOOLS_KVSTORECTL_HEALTH_H_
#define KVSTORE_TOOLS_KVSTORECTL_HEALTH_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "kvstore/mesh/mesh.h"
#include "kvstore/mutex.h"

namespace kvstorectl {

struct HealthReport {
  bool ok = false;
  std::string body;  // the reasons, one a line, ending with a newline
};

// Called on an HTTP server thread for each request: thread-safe, and quick (a probe times out).
using HealthCheck = std::function<HealthReport()>;

// A command's main loop says it turned; /healthz fails once it has not for `stall_after`. Before
// the first turn (the command still starting) it is healthy.
class LoopMonitor {
 public:
  LoopMonitor(std::string name, std::chrono::steady_clock::duration stall_after);
  LoopMonitor(const LoopMonitor&) = delete;
  LoopMonitor& operator=(const LoopMonitor&) = delete;

  // Thread-safe.
  void Turned();
  HealthReport Check() const;

 private:
  const std::string name_;
  const std::chrono::steady_clock::duration stall_after_;
  // steady_clock ticks of the last turn; 0: not yet.
  std::atomic<std::chrono::steady_clock::rep> last_turn_{0};
};

// Where a command is on its way to ready, as /readyz tells it: not ready with what it is doing,
// until it says it is.
class Readiness {
 public:
  explicit Readiness(std::string reason);
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  // Thread-safe.
  void Set(bool ready, std::string reason);
  HealthReport Check() const;

 private:
  // kvstore::Mutex (a std::mutex), not absl::Mutex: Debian's abseil is not built with
  // ThreadSanitizer, which then cannot see an absl::Mutex order anything (make test-tsan
  // reported these fields as races).
  mutable kvstore::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  std::string reason_ ABSL_GUARDED_BY(mu_);
};

// The mesh's readiness from its remote clusters: ready when every one is (also when there is
// none; a removed one still draining does not count), else 503 with how many are not and, for
// each, why (its status and last error).
HealthReport MeshReadiness(const std::vector<kvstore::mesh::RemoteClusterStatus>& clusters);

// Both reports in one: ok when both are, the bodies one after the other.
HealthReport Combine(const HealthReport& first, const HealthReport& second);

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_HEALTH_H_

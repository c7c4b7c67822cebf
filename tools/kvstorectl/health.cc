#include "health.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "agent_mesh_support.h"
#include "kvstore/mutex.h"

namespace kvstorectl {

LoopMonitor::LoopMonitor(std::string name, std::chrono::steady_clock::duration stall_after)
    : name_(std::move(name)), stall_after_(stall_after) {}

void LoopMonitor::Turned() {
  last_turn_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                   std::memory_order_relaxed);
}

HealthReport LoopMonitor::Check() const {
  const std::chrono::steady_clock::rep last = last_turn_.load(std::memory_order_relaxed);
  if (last == 0) return {true, name_ + ": starting\n"};
  const auto age = std::chrono::steady_clock::now() -
                   std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(last));
  const auto age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(age).count();
  const auto limit_ms = std::chrono::duration_cast<std::chrono::milliseconds>(stall_after_).count();
  if (age > stall_after_) {
    return {false, absl::StrCat(name_, ": stalled, last turned ", age_ms, "ms ago (limit ",
                                limit_ms, "ms)\n")};
  }
  return {true, absl::StrCat(name_, ": turning, last turned ", age_ms, "ms ago\n")};
}

Readiness::Readiness(std::string reason) : reason_(std::move(reason)) {}

void Readiness::Set(bool ready, std::string reason) {
  kvstore::MutexLock lock(mu_);
  ready_ = ready;
  reason_ = std::move(reason);
}

HealthReport Readiness::Check() const {
  kvstore::MutexLock lock(mu_);
  return {ready_, reason_ + "\n"};
}

HealthReport MeshReadiness(const std::vector<kvstore::mesh::RemoteClusterStatus>& clusters) {
  std::string details;
  size_t not_ready = 0;
  for (const kvstore::mesh::RemoteClusterStatus& cluster : clusters) {
    size_t synced = 0;
    for (const kvstore::mesh::PrefixStatus& prefix : cluster.prefixes) synced += prefix.synced;
    absl::StrAppend(&details, "cluster ", EscapeForLine(cluster.name), ": ",
                    cluster.ready ? "ready" : "not ready",
                    " connected=", cluster.connected ? "true" : "false", " synced=", synced, "/",
                    cluster.prefixes.size(), " failures=", cluster.failures);
    // A removed cluster on its way out does not hold readiness back.
    if (cluster.draining) absl::StrAppend(&details, " draining=true");
    if (!cluster.ready && !cluster.draining) {
      absl::StrAppend(&details, " status=\"", EscapeForLine(cluster.status), "\"");
      if (!cluster.last_error.empty()) {
        absl::StrAppend(&details, " last_error=\"", EscapeForLine(cluster.last_error), "\"");
      }
      ++not_ready;
    }
    absl::StrAppend(&details, "\n");
  }
  if (not_ready == 0) {
    return {true, absl::StrCat("ready: ", clusters.size(), " remote cluster",
                               clusters.size() == 1 ? "" : "s", " ready\n", details)};
  }
  return {false, absl::StrCat("not ready: ", not_ready, " of ", clusters.size(),
                              " remote clusters not ready\n", details)};
}

HealthReport Combine(const HealthReport& first, const HealthReport& second) {
  return {first.ok && second.ok, first.body + second.body};
}

}  // namespace kvstorectl

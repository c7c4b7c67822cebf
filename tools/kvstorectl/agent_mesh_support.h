// What the long-running commands (agent, mesh) share: the terminal, metrics start-up and back-off.
#ifndef KVSTORE_TOOLS_KVSTORECTL_AGENT_MESH_SUPPORT_H_
#define KVSTORE_TOOLS_KVSTORECTL_AGENT_MESH_SUPPORT_H_

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backoff.h"
#include "kvstore/backend.h"
#include "kvstore/mutex.h"
#include "nlohmann/json.hpp"
#include "observability.h"

namespace kvstorectl {

// Writes a log line at info level even when --log-level hides info (not when it is "off"): for
// facts a caller needs whatever the level, such as the address the metrics are served on.
void Announce(const std::string& message);

// "host:port" as given; a bare port or ":port" becomes "127.0.0.1:port", so that metrics stay on
// loopback unless a host is named. InvalidArgument for anything else.
absl::StatusOr<std::string> NormalizeListenAddress(std::string_view listen);

// Throws CLI::ValidationError for --metrics-listen when `listen` is neither empty nor an address
// NormalizeListenAddress takes.
void ValidateMetricsListen(std::string_view listen);

// Starts serving metrics on `listen` (see NormalizeListenAddress) and announces
// "metrics listening on HOST:PORT" with the actual port. An empty `listen` (metrics off): nullptr.
absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetrics(std::string_view listen);

// `bytes` with control characters (newlines included) written as \xNN, so that one record stays
// on one line of text output. Everything else is passed through unchanged.
std::string EscapeForLine(std::string_view bytes);

// One JSON object on one line; invalid UTF-8 in keys or values is replaced rather than rejected.
std::string DumpJsonLine(const nlohmann::json& object);

// How fresh each watch is, as an array: {"prefix", "last-heard" (RFC 3339) and "age-seconds"
// (at `now`) once it heard anything, "list-pages", "restarts" {reason: n}, "stalled" if so}.
nlohmann::json WatchesJson(const std::vector<kvstore::WatchFreshness>& watches,
                           std::chrono::system_clock::time_point now);

// Serializes the lines a command writes to stdout, each flushed at once, and keeps a progress line
// at the bottom of a terminal. When stdout is not a terminal progress is never written.
// Thread-safe.
class Output {
 public:
  Output();
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  void PrintLine(std::string_view line);
  // Replaces the progress line (no-op unless stdout is a terminal).
  void SetProgress(std::string_view progress);
  void ClearProgress();
  bool Interactive() const { return interactive_; }

 private:
  void EraseProgressLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const bool interactive_;
  kvstore::Mutex mu_;  // guards progress_ and the writes to stdout
  std::string progress_ ABSL_GUARDED_BY(mu_);
};

// Exponential back-off between retries: base, 2*base, ... up to max.
using Backoff = kvstore::internal::Backoff;

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_AGENT_MESH_SUPPORT_H_

// The heartbeat key cilium/.heartbeat (kvstore/paths.h): a writer refreshes it; every client that
// watches it can tell a backend whose writes no longer arrive (Cilium's agents fail their quorum
// check then).
#ifndef KVSTORE_MESH_HEARTBEAT_H_
#define KVSTORE_MESH_HEARTBEAT_H_

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "kvstore/backend.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/export.h"
#include "kvstore/mutex.h"

namespace kvstore::mesh {

// How often the heartbeat is written (Cilium's HeartbeatWriteInterval).
inline constexpr std::chrono::seconds kHeartbeatWriteInterval{60};
// A heartbeat not seen for longer than this is stale (twice the write interval, as the agents'
// quorum check).
inline constexpr std::chrono::seconds kHeartbeatStaleAfter = 2 * kHeartbeatWriteInterval;

// The value written: the wall-clock time in RFC 3339, in UTC ("2026-12-03T08:40:00Z"), as Cilium
// writes it. Readers do not parse it: they time the writes they see.
KVSTORE_EXPORT std::string FormatHeartbeat(std::chrono::system_clock::time_point now);

// Writes cilium/.heartbeat (leased to the backend's session when `lease`, as Cilium does) now and
// then every `interval` until `ctx` is done. A failed write is logged and tried again at the next
// tick. `clock` null: SystemClock().
KVSTORE_EXPORT void RunHeartbeat(const Context& ctx, Backend& backend,
                                 std::chrono::milliseconds interval, bool lease = true,
                                 std::shared_ptr<Clock> clock = nullptr);

// Watches cilium/.heartbeat in one backend and tells how long ago a write of it was seen, by this
// process's clock (the writer's clock is not trusted). Thread-safe; Run on one thread.
class KVSTORE_EXPORT HeartbeatMonitor {
 public:
  // `clock` null: SystemClock().
  explicit HeartbeatMonitor(std::chrono::milliseconds stale_after = kHeartbeatStaleAfter,
                            std::shared_ptr<Clock> clock = nullptr);
  HeartbeatMonitor(const HeartbeatMonitor&) = delete;
  HeartbeatMonitor& operator=(const HeartbeatMonitor&) = delete;

  // Watches until `ctx` is done. The key existing at the start counts as seen at the start.
  void Run(const Context& ctx, WatchStoreBackend& backend);

  // When the last write was seen; nullopt before the first.
  std::optional<Clock::time_point> LastSeen() const;
  // True when no write was seen within `stale_after`, counting from Run's start until the first
  // (as the agents' check does), and before Run started.
  bool Stale() const;
  // OK when not stale; otherwise Unavailable saying since when no heartbeat was seen.
  absl::Status Check() const;

 private:
  const std::chrono::milliseconds stale_after_;
  const std::shared_ptr<Clock> clock_;
  mutable Mutex mu_;  // guards the fields below
  std::optional<Clock::time_point> started_ ABSL_GUARDED_BY(mu_);
  std::optional<Clock::time_point> last_seen_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvstore::mesh

#endif  // KVSTORE_MESH_HEARTBEAT_H_

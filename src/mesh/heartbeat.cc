#include "kvstore/mesh/heartbeat.h"

#include <ctime>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/clock_sleep.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "mesh/heartbeat_write.h"
#include "spdlog/spdlog.h"

namespace kvstore::mesh {

std::string FormatHeartbeat(std::chrono::system_clock::time_point now) {
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm utc{};
  gmtime_r(&t, &utc);
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                         utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
}

namespace internal {

void WriteHeartbeat(const Context& ctx, Backend& backend, bool lease,
                    std::chrono::system_clock::time_point now) {
  // Bounded as Cilium bounds it (its lock lease TTL), so that a hung target delays no tick.
  auto [write_ctx, done] = WithTimeout(ctx, std::chrono::seconds(25));
  absl::Status status = backend.Update(write_ctx, kHeartbeatPath, FormatHeartbeat(now), lease);
  done();
  if (!status.ok() && !ctx.Done()) {
    spdlog::warn("cannot write heartbeat key={} error={}", kHeartbeatPath, status.ToString());
  }
}

}  // namespace internal

void RunHeartbeat(const Context& ctx, Backend& backend, std::chrono::milliseconds interval,
                  bool lease, std::shared_ptr<Clock> clock) {
  if (!clock) clock = SystemClock();
  do {
    internal::WriteHeartbeat(ctx, backend, lease, clock->WallNow());
  } while (kvstore::internal::SleepOnClock(ctx, *clock, interval));
}

HeartbeatMonitor::HeartbeatMonitor(std::chrono::milliseconds stale_after,
                                   std::shared_ptr<Clock> clock)
    : stale_after_(stale_after), clock_(clock ? std::move(clock) : SystemClock()) {}

void HeartbeatMonitor::Run(const Context& ctx, WatchStoreBackend& backend) {
  {
    MutexLock lock(mu_);
    started_ = clock_->Now();
  }
  std::shared_ptr<Watcher> watcher =
      backend.ListAndWatchWith(ctx, kHeartbeatPath, 16, WatchOptions{.delete_values = false});
  std::deque<KeyValueEvent> events;
  while (watcher->NextBatch(ctx, &events)) {
    for (const KeyValueEvent& event : events) {
      // Only the key itself: cilium/.heartbeat is also the prefix of cilium/.heartbeatX.
      if (event.type == EventType::kListDone || event.key != kHeartbeatPath) continue;
      if (event.type == EventType::kDelete) continue;
      MutexLock lock(mu_);
      last_seen_ = clock_->Now();
    }
    events.clear();
  }
  watcher->Stop();
}

std::optional<Clock::time_point> HeartbeatMonitor::LastSeen() const {
  MutexLock lock(mu_);
  return last_seen_;
}

bool HeartbeatMonitor::Stale() const { return !Check().ok(); }

absl::Status HeartbeatMonitor::Check() const {
  MutexLock lock(mu_);
  const Clock::time_point now = clock_->Now();
  if (last_seen_.has_value()) {
    if (now - *last_seen_ <= stale_after_) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrCat("no heartbeat for ",
                     std::chrono::duration_cast<std::chrono::seconds>(now - *last_seen_).count(),
                     " s (stale after ", stale_after_.count() / 1000, " s)"));
  }
  if (started_.has_value() && now - *started_ <= stale_after_) return absl::OkStatus();
  return absl::UnavailableError(
      started_.has_value()
          ? absl::StrCat("no heartbeat seen in ",
                         std::chrono::duration_cast<std::chrono::seconds>(now - *started_).count(),
                         " s")
          : std::string("heartbeat not watched yet"));
}

}  // namespace kvstore::mesh

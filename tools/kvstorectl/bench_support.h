// What every `kvstorectl bench` workload shares: the measured phase (wall time and this process's
// CPU and peak memory), the progress line, the result line, the key and value layout, and opening
// the backend the flags name.
#ifndef KVSTORE_TOOLS_KVSTORECTL_BENCH_SUPPORT_H_
#define KVSTORE_TOOLS_KVSTORECTL_BENCH_SUPPORT_H_

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "backend_flags.h"
#include "kvstore/backend.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/mutex.h"

namespace kvstorectl::bench {

// What a measured phase cost. `seconds` is wall time; `client_cpu_seconds` is user+sys time of the
// whole process (every thread) during the phase; `maxrss_kb` is the process's peak resident set.
struct Measurement {
  double seconds = 0;
  double client_cpu_seconds = 0;
  int64_t maxrss_kb = 0;
};

// Starts measuring when constructed.
class MeasuredPhase {
 public:
  MeasuredPhase();
  MeasuredPhase(const MeasuredPhase&) = delete;
  MeasuredPhase& operator=(const MeasuredPhase&) = delete;

  // Ends the phase. Call once.
  Measurement Finish();
  // When the phase started.
  std::chrono::steady_clock::time_point start() const { return start_; }

 private:
  std::chrono::steady_clock::time_point start_;
  rusage start_usage_{};
};

// Extra `key=value` fields of a result line, in order.
using Fields = std::vector<std::pair<std::string, std::string>>;

// The result line: workload, keys, seconds, ops_per_s, client_cpu_s, cpu_us_per_op, maxrss_kb,
// then `extra`. No trailing newline.
std::string ResultLine(std::string_view workload, int64_t keys, const Measurement& m,
                       const Fields& extra);

// A one-line progress display on stderr, refreshed a few times a second by its own thread while
// it lives; erased when stopped. Does nothing when disabled.
class Progress {
 public:
  // `status` ("1200/5000 keys written") is called from the progress thread: it must be
  // thread-safe.
  Progress(bool enabled, std::string label, std::function<std::string()> status);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  // Stops the display and joins its thread. Idempotent.
  void Stop();

 private:
  void Loop();

  const std::string label_;
  const std::function<std::string()> status_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  kvstore::Mutex mu_;  // guards stopping_
  kvstore::CondVar cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// True when progress should be shown: stderr is a terminal and --quiet was not given.
bool ShowProgress(bool quiet);

// Key names relative to the prefix: "k00000042", and "c003/k00000042" for collaborator 3.
std::string KeyName(int64_t index);
std::string CollaboratorKeyName(int collaborator, int64_t index);

// The value written for `name`: JSON-like text of exactly `size` bytes (truncated when `size` is
// below the JSON skeleton), different for every name.
std::string ValueFor(std::string_view name, size_t size);

// The backend the global flags name: etcd (a new client each call, with `list_page_size`) or the
// process-wide embedded client.
absl::StatusOr<std::shared_ptr<kvstore::Backend>> OpenBackend(const BackendFlags& flags,
                                                              size_t list_page_size = 0);

// Wakes a waiter when some thread reports that something happened (or failed).
class Signal {
 public:
  void Notify();
  // Waits until `done()` holds, `ctx` is done, or `poll` has passed since the last check; loops
  // until `done()` holds or `ctx` is done. Returns done().
  bool WaitUntil(const kvstore::Context& ctx, const std::function<bool()>& done,
                 std::chrono::milliseconds poll);

 private:
  kvstore::Mutex mu_;  // guards generation_
  kvstore::CondVar cv_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvstorectl::bench

#endif  // KVSTORE_TOOLS_KVSTORECTL_BENCH_SUPPORT_H_

// The workloads of `kvstorectl bench` (see /work/shared/BENCHMARKS.md for what each measures).
#ifndef KVSTORE_TOOLS_KVSTORECTL_BENCH_WORKLOADS_H_
#define KVSTORE_TOOLS_KVSTORECTL_BENCH_WORKLOADS_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backend_flags.h"
#include "bench_support.h"
#include "kvstore/context.h"

namespace kvstorectl::bench {

// Cluster name of the sync and watch stores; the sync workload's canary is
// cilium/synced/bench/<prefix>.
inline constexpr std::string_view kBenchClusterName = "bench";

struct BenchConfig {
  const BackendFlags* backend = nullptr;  // required
  kvstore::Context ctx;                   // ends the run early (SIGINT/SIGTERM)
  std::string prefix;                     // without a trailing slash
  int64_t keys = 0;
  size_t value_size = 256;
  bool progress = false;
  std::chrono::duration<double> timeout{600};  // bound on the measured phase
  int concurrency = 64;                        // raw, fill (with async: calls in flight)
  bool async = false;                          // raw: UpdateAsync from one caller
  unsigned workers = 8;                        // sync
  size_t page_size = 0;                        // watch: etcd list page (0: library default)
  int64_t fill_keys = -1;                      // watch: keys written first (-1: the default)
  int collaborators = 10;                      // shared
  int64_t keys_per_collaborator = 1000;        // shared
  int clusters = 10;                           // mesh
  int64_t keys_per_cluster = 100;              // mesh
};

// A measured phase that ran to its end. `verification` tells whether the end state was right.
struct BenchOutcome {
  int64_t keys = 0;
  Measurement measurement;
  Fields fields;  // workload-specific fields of the result line
  absl::Status verification;
};

// Each returns an error when the run could not be measured (no backend, a failed write, timeout,
// interrupted), else the outcome.
absl::StatusOr<BenchOutcome> RunRaw(const BenchConfig& config);
absl::StatusOr<BenchOutcome> RunFill(const BenchConfig& config);
absl::StatusOr<BenchOutcome> RunSync(const BenchConfig& config);
absl::StatusOr<BenchOutcome> RunWatch(const BenchConfig& config);
absl::StatusOr<BenchOutcome> RunShared(const BenchConfig& config);
// N remote clusters (Cilium's layout, each with its own client of the etcd or embedded store)
// mirrored by a Mesh into an embedded target; prints the peak thread count (`threads`).
absl::StatusOr<BenchOutcome> RunMesh(const BenchConfig& config);

}  // namespace kvstorectl::bench

#endif  // KVSTORE_TOOLS_KVSTORECTL_BENCH_WORKLOADS_H_

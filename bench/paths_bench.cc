// Key path joining and scope extraction: done for every key a store writes or reports.
#include <benchmark/benchmark.h>

#include <string>

#include "kvstore/paths.h"

namespace {

void BM_JoinPath(benchmark::State& state) {
  const std::string prefix = "cilium/state/nodes/v1";
  const std::string name = "default/node-0001";
  for (auto _ : state) benchmark::DoNotOptimize(kvstore::JoinPath(prefix, name));
}
BENCHMARK(BM_JoinPath);

void BM_GetScopeFromKey(benchmark::State& state) {
  const std::string key = "cilium/state/nodes/v1/default/node-0001";
  for (auto _ : state) benchmark::DoNotOptimize(kvstore::GetScopeFromKey(key));
}
BENCHMARK(BM_GetScopeFromKey);

}  // namespace

BENCHMARK_MAIN();

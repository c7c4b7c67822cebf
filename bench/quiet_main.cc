// main() of the micro-benchmarks that drive stores: the stores log each Watch start and stop at
// info level, which would interleave with the benchmark's table.
#include "benchmark/benchmark.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

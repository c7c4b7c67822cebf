// Throughput of the work queue's Add/Get/Done cycle, single-threaded and with concurrent workers.
#include <benchmark/benchmark.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kvstore/context.h"
#include "kvstore/workqueue/queue.h"
#include "kvstore/workqueue/rate_limiting_queue.h"

namespace kvstore::workqueue {
namespace {

std::vector<std::string> MakeKeys(int n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (int i = 0; i < n; ++i) keys.push_back("cilium/state/bench/v1/key-" + std::to_string(i));
  return keys;
}

// One thread adds a batch of distinct keys, then gets and marks each done.
void BM_AddGetDone(benchmark::State& state) {
  const std::vector<std::string> keys = MakeKeys(static_cast<int>(state.range(0)));
  Queue<std::string> queue;
  for (auto _ : state) {
    for (const auto& key : keys) queue.Add(key);
    while (queue.Len() > 0) {
      std::optional<std::string> item = queue.Get();
      queue.Done(*item);
    }
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_AddGetDone)->Arg(1000)->Arg(20000);

// Adds of keys that are already waiting: the dedup path a busy producer takes.
void BM_AddDuplicate(benchmark::State& state) {
  const std::vector<std::string> keys = MakeKeys(1000);
  Queue<std::string> queue;
  for (const auto& key : keys) queue.Add(key);
  size_t i = 0;
  for (auto _ : state) {
    queue.Add(keys[i]);
    i = (i + 1) % keys.size();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AddDuplicate);

// Batches handed out with GetBatch, as a writer batching keys into one transaction would.
void BM_AddGetBatchDone(benchmark::State& state) {
  const std::vector<std::string> keys = MakeKeys(20000);
  const size_t batch = static_cast<size_t>(state.range(0));
  Queue<std::string> queue;
  Context ctx;
  for (auto _ : state) {
    for (const auto& key : keys) queue.Add(key);
    while (queue.Len() > 0) {
      for (const auto& item : queue.GetBatch(ctx, batch)) queue.Done(item);
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(keys.size()));
}
BENCHMARK(BM_AddGetBatchDone)->Arg(128);

// One producer and state.range(0) worker threads; measures the whole hand-off.
void BM_ProducerWorkers(benchmark::State& state) {
  const std::vector<std::string> keys = MakeKeys(20000);
  const int workers = static_cast<int>(state.range(0));
  for (auto _ : state) {
    RateLimitingQueue<std::string> queue(DefaultControllerRateLimiter<std::string>());
    std::vector<std::thread> threads;
    for (int w = 0; w < workers; ++w) {
      threads.emplace_back([&] {
        while (std::optional<std::string> item = queue.Get()) {
          queue.Forget(*item);
          queue.Done(*item);
        }
      });
    }
    for (const auto& key : keys) queue.Add(key);
    queue.ShutDownWithDrain();
    for (auto& t : threads) t.join();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(keys.size()));
}
BENCHMARK(BM_ProducerWorkers)->Arg(1)->Arg(8)->UseRealTime();

}  // namespace
}  // namespace kvstore::workqueue

BENCHMARK_MAIN();

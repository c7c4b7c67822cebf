// Hand-over of watch events through a Watcher: the path every event takes from a backend's thread
// to the consumer blocked in Next (WatchStore::Watch).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "core/relist_diff.h"
#include "core/watcher_producer.h"
#include "kvstore/context.h"
#include "kvstore/events.h"

namespace kvstore {
namespace {

KeyValueEvent MakeEvent(int64_t i) {
  return KeyValueEvent{EventType::kModify, "cilium/state/bench/v1/key-" + std::to_string(i % 1000),
                       std::string(256, 'v'), i + 1};
}

// One thread queues an event and takes it back: the cost of the channel without any wake-up.
void BM_TryEmitNext(benchmark::State& state) {
  Watcher watcher("cilium/state/bench/v1/", 64);
  int64_t i = 0;
  for (auto _ : state) {
    KeyValueEvent ev = MakeEvent(i++);
    internal::WatcherProducer(watcher).TryEmit(ev);
    std::optional<KeyValueEvent> got = watcher.Next();
    benchmark::DoNotOptimize(got);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TryEmitNext);

// A producer thread emits events as fast as it can while the benchmark thread consumes them,
// with the channel capacity as the argument: small capacities make both sides wait and wake
// each other, large ones let the consumer drain batches.
void BM_ProducerConsumer(benchmark::State& state) {
  constexpr int64_t kEvents = 20000;
  const auto capacity = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    Watcher watcher("cilium/state/bench/v1/", capacity);
    std::thread producer([&watcher] {
      for (int64_t i = 0; i < kEvents; ++i) {
        if (!watcher.Emit(MakeEvent(i), Context::Background())) break;
      }
      watcher.Close();
    });
    int64_t received = 0;
    while (std::optional<KeyValueEvent> ev = watcher.Next()) ++received;
    producer.join();
    if (received != kEvents) state.SkipWithError("events were lost");
  }
  state.SetItemsProcessed(state.iterations() * kEvents);
}
BENCHMARK(BM_ProducerConsumer)->Arg(1)->Arg(16)->Arg(1024)->UseRealTime();

// A watched put through KnownKeys into the consumer's hands, as WatchHub applies one: the value
// copied from the response (arg 0) or moved out of it (arg 1; values not kept, as the stores ask).
void BM_KnownKeysApplyPut(benchmark::State& state) {
  const bool owned = state.range(0) == 1;
  internal::KnownKeys known("cilium/state/bench/v1/", /*keep_values=*/false);
  std::optional<KeyValueEvent> taken;
  auto take = [&taken](KeyValueEvent& event) {
    taken.emplace(std::move(event));
    return true;
  };
  int64_t i = 0;
  for (auto _ : state) {
    std::string value(256, 'v');  // as parsed into a watch response
    const std::string key = "cilium/state/bench/v1/key-" + std::to_string(i % 1000);
    ++i;
    const bool ok = owned ? known.ApplyPut(key, i, std::move(value), take)
                          : known.ApplyPut(key, i, std::string_view(value), take);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(taken);
  }
}
BENCHMARK(BM_KnownKeysApplyPut)->Arg(0)->Arg(1);

}  // namespace
}  // namespace kvstore

BENCHMARK_MAIN();

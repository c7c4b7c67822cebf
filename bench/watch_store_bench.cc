// Cost of turning watch events into store updates: WatchStore with KVPairCreator and an observer
// that does nothing, fed from a watcher whose events are already buffered (no backend work).
#include <cstdint>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "kvstore/backend.h"
#include "kvstore/events.h"
#include "kvstore/store/key.h"
#include "kvstore/store/watch_store.h"

namespace {

using kvstore::Context;
using kvstore::EventType;
using kvstore::KeyValueEvent;
using kvstore::Watcher;

constexpr std::string_view kPrefix = "cilium/state/nodes/v1/";

class CountingObserver final : public kvstore::store::Observer {
 public:
  void OnUpdate(const kvstore::store::Key&) override { ++updates; }
  void OnDelete(const kvstore::store::NamedKey&) override { ++deletes; }
  int64_t updates = 0;
  int64_t deletes = 0;
};

// Hands out one prepared, already closed watcher.
class PreparedBackend final : public kvstore::WatchStoreBackend {
 public:
  std::shared_ptr<Watcher> ListAndWatch(const Context&, std::string_view, size_t) override {
    return std::move(next);
  }
  std::shared_ptr<Watcher> next;
};

// A new store with an observer of its own.
struct CountingStore {
  std::shared_ptr<CountingObserver> observer = std::make_shared<CountingObserver>();
  std::unique_ptr<kvstore::store::WatchStore> store =
      kvstore::store::NewRestartableWatchStore("bench", kvstore::store::KVPairCreator, observer);
};

// A closed watcher holding `n` events of `type` for keys node-0 ... node-(n-1).
std::shared_ptr<Watcher> PrepareWatcher(int64_t n, EventType type) {
  auto watcher = std::make_shared<Watcher>(std::string(kPrefix), static_cast<size_t>(n));
  Context ctx;
  // About the size of a Cilium node entry.
  std::string value(512, 'x');
  for (int64_t i = 0; i < n; ++i) {
    watcher->Emit(KeyValueEvent{type, std::string(kPrefix) + "node-" + std::to_string(i), value},
                  ctx);
  }
  watcher->Close();
  return watcher;
}

// A fresh store lists `n` new keys.
void BM_WatchStoreInitialList(benchmark::State& state) {
  const int64_t n = state.range(0);
  PreparedBackend backend;
  for (auto _ : state) {
    state.PauseTiming();
    CountingStore fresh;
    backend.next = PrepareWatcher(n, EventType::kCreate);
    state.ResumeTiming();
    fresh.store->Watch(Context::Background(), backend, kPrefix);
    benchmark::DoNotOptimize(fresh.observer->updates);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_WatchStoreInitialList)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

// A store that knows `n` keys receives a modification of each.
void BM_WatchStoreModify(benchmark::State& state) {
  const int64_t n = state.range(0);
  PreparedBackend backend;
  CountingStore known;
  backend.next = PrepareWatcher(n, EventType::kCreate);
  known.store->Watch(Context::Background(), backend, kPrefix);
  for (auto _ : state) {
    state.PauseTiming();
    // No kListDone: keys marked stale by Watch are refreshed, never deleted.
    backend.next = PrepareWatcher(n, EventType::kModify);
    state.ResumeTiming();
    known.store->Watch(Context::Background(), backend, kPrefix);
  }
  if (known.observer->deletes != 0) state.SkipWithError("keys were deleted");
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_WatchStoreModify)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

// A store that knows `n` keys lists again and finds none of them: an OnDelete each, with the
// last value (the store keeps values, not Key objects, so each delete makes its Key again).
void BM_WatchStoreStaleDeletes(benchmark::State& state) {
  const int64_t n = state.range(0);
  PreparedBackend backend;
  for (auto _ : state) {
    state.PauseTiming();
    CountingStore known;
    backend.next = PrepareWatcher(n, EventType::kCreate);
    known.store->Watch(Context::Background(), backend, kPrefix);
    backend.next = PrepareWatcher(1, EventType::kListDone);
    state.ResumeTiming();
    known.store->Watch(Context::Background(), backend, kPrefix);
    if (known.observer->deletes != n) state.SkipWithError("not every key was deleted");
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_WatchStoreStaleDeletes)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

}  // namespace

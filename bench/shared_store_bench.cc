// Cost of a collaborator's writes reaching another collaborator's SharedStore on the embedded
// store: the write, the watch event, and the store's update of its shared keys (KVPairCreator,
// an observer that counts). Two clients of one in-memory store, no network.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "kvstore/backend.h"
#include "kvstore/context.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"

namespace {

using kvstore::Context;

constexpr char kPrefix[] = "cilium/state/nodes/v1";

// Counts updates and lets the benchmark wait for a count.
class CountingObserver final : public kvstore::store::Observer {
 public:
  void OnUpdate(const kvstore::store::Key&) override {
    {
      std::lock_guard<std::mutex> guard(mu_);
      ++updates_;
    }
    cv_.notify_all();
  }
  void OnDelete(const kvstore::store::NamedKey&) override {}

  // False when `count` updates were not seen within the deadline.
  bool WaitFor(int64_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return updates_ >= count; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t updates_ = 0;
};

// Each iteration, one collaborator writes `n` keys (created in the first, modified after) and
// the other's store sees them all.
void BM_SharedStoreSeesWrites(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::shared_ptr<kvstore::memory::InMemoryStore> memory = kvstore::memory::InMemoryStore::Create();
  std::shared_ptr<kvstore::Backend> writer = memory->NewClient("writer");
  auto observer = std::make_shared<CountingObserver>();
  kvstore::store::Configuration config;
  config.prefix = kPrefix;
  config.key_creator = kvstore::store::KVPairCreator;
  config.backend = memory->NewClient("reader");
  config.observer = observer;
  auto store = kvstore::store::SharedStore::Join(std::move(config));
  if (!store.ok()) {
    state.SkipWithError(store.status().ToString().c_str());
    return;
  }
  std::vector<std::string> keys;
  for (int64_t i = 0; i < n; ++i) {
    keys.push_back(std::string(kPrefix) + "/node-" + std::to_string(i));
  }
  Context ctx;
  int64_t seen = 0;
  int64_t round = 0;
  for (auto _ : state) {
    // About the size of a Cilium node entry; differs each round, so every write is a change.
    const std::string value(512, static_cast<char>('a' + round++ % 26));
    bool written = true;
    for (const std::string& key : keys) {
      written = written && writer->Update(ctx, key, value, /*lease=*/false).ok();
    }
    if (!written) {
      state.SkipWithError("a write failed");
      break;
    }
    seen += n;
    if (!observer->WaitFor(seen)) {
      state.SkipWithError("the store did not see every write");
      break;
    }
  }
  if ((*store)->NumEntries() != n) state.SkipWithError("the store holds a wrong number of keys");
  (*store)->Release();
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SharedStoreSeesWrites)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

}  // namespace

// The conformance suite against the embedded in-memory backend.
#include <memory>
#include <vector>

#include "kvstore/backend_metrics.h"
#include "kvstore/memory/in_memory_store.h"
#include "prometheus/registry.h"
#include "tests/backend_conformance/backend_conformance.h"

namespace {

using ::kvstore::Backend;
using ::kvstore::testing::BackendFactory;
namespace memory = ::kvstore::memory;

// One store per test, like a fresh server; with metrics, its clients record into a registry of
// their own (through a wrapper that must not change any behaviour).
class InMemoryFactory final : public BackendFactory {
 public:
  explicit InMemoryFactory(bool with_metrics) {
    memory::InMemoryOptions options;
    if (with_metrics) options.metrics = std::make_shared<kvstore::BackendMetrics>(registry_);
    store_ = memory::InMemoryStore::Create(options);
  }

  std::shared_ptr<Backend> NewClient() override { return store_->NewClient("conformance"); }
  void ExpireSession(const Backend& client, const std::vector<int64_t>& /*lease_ids*/) override {
    store_->ExpireSession(client);
  }
  void Compact() override { store_->Compact(); }

 private:
  prometheus::Registry registry_;
  std::shared_ptr<memory::InMemoryStore> store_;
};

std::unique_ptr<BackendFactory> MakeInMemoryFactory() {
  return std::make_unique<InMemoryFactory>(/*with_metrics=*/false);
}
std::unique_ptr<BackendFactory> MakeInMemoryFactoryWithMetrics() {
  return std::make_unique<InMemoryFactory>(/*with_metrics=*/true);
}

INSTANTIATE_BACKEND_CONFORMANCE(InMemory, MakeInMemoryFactory);
INSTANTIATE_BACKEND_CONFORMANCE(InMemoryWithMetrics, MakeInMemoryFactoryWithMetrics);

}  // namespace

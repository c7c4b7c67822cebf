// The conformance suite against the embedded in-memory backend.
#include <memory>
#include <vector>

#include "kvstore/memory/in_memory_store.h"
#include "tests/backend_conformance/backend_conformance.h"

namespace {

using ::kvstore::Backend;
using ::kvstore::testing::BackendFactory;
namespace memory = ::kvstore::memory;

// One store per test, like a fresh server.
class InMemoryFactory final : public BackendFactory {
 public:
  std::shared_ptr<Backend> NewClient() override { return store_->NewClient("conformance"); }
  void ExpireSession(const Backend& client, const std::vector<int64_t>& /*lease_ids*/) override {
    store_->ExpireSession(client);
  }
  void Compact() override { store_->Compact(); }

 private:
  std::shared_ptr<memory::InMemoryStore> store_ = memory::InMemoryStore::Create();
};

std::unique_ptr<BackendFactory> MakeInMemoryFactory() {
  return std::make_unique<InMemoryFactory>();
}

INSTANTIATE_BACKEND_CONFORMANCE(InMemory, MakeInMemoryFactory);

}  // namespace

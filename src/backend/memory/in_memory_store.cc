#include "kvstore/memory/in_memory_store.h"

#include <memory>
#include <utility>

#include "backend/memory/in_memory_client.h"
#include "backend/memory/store_core.h"
#include "metrics/backend_metrics.h"

namespace kvstore::memory {
namespace {

// The public handle. Its lifetime bounds the store's threads: the last client (or the caller of
// Create) to let go of it shuts the core down.
class InMemoryStoreImpl final : public InMemoryStore {
 public:
  explicit InMemoryStoreImpl(InMemoryOptions opts)
      : metrics_(opts.metrics), core_(std::make_shared<internal::StoreCore>(std::move(opts))) {
    core_->Start();
  }
  ~InMemoryStoreImpl() override { core_->Shutdown(); }

  std::shared_ptr<Backend> NewClient(std::string name) override {
    return kvstore::internal::WithOperationMetrics(
        std::make_shared<internal::InMemoryClient>(shared_from_this(), core_, std::move(name)),
        metrics_);
  }

  void ExpireSession(const Backend& client) override {
    const auto* in_memory = dynamic_cast<const internal::InMemoryClient*>(
        &kvstore::internal::UnwrapOperationMetrics(client));
    if (in_memory == nullptr || in_memory->core() != core_.get()) return;  // not ours
    core_->ExpireSession(in_memory->session_id());
  }

  void Compact(int64_t revision) override { core_->Compact(revision); }
  int64_t Revision() const override { return core_->Revision(); }
  void ExpireDueLeases() override { core_->ExpireDueLeases(); }

 private:
  const std::shared_ptr<store::Metrics> metrics_;
  const std::shared_ptr<internal::StoreCore> core_;
};

}  // namespace

std::shared_ptr<InMemoryStore> InMemoryStore::Create(InMemoryOptions opts) {
  return std::make_shared<InMemoryStoreImpl>(std::move(opts));
}

}  // namespace kvstore::memory

#include "kvstore/memory/in_memory_store.h"

#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "backend/memory/in_memory_client.h"
#include "backend/memory/server.h"
#include "kvstore/mutex.h"
#include "metrics/recorders.h"

namespace kvstore::memory {
namespace {

// The public handle. Its lifetime bounds the store's work: the last client (or the caller of
// Create) to let go of it shuts the server down.
class InMemoryStoreImpl final : public InMemoryStore {
 public:
  explicit InMemoryStoreImpl(InMemoryOptions opts)
      : metrics_(opts.metrics),
        server_(std::make_shared<internal::InMemoryServer>(std::move(opts))) {}
  ~InMemoryStoreImpl() override { server_->Shutdown(); }

  std::shared_ptr<Backend> NewClient(std::string name) override {
    auto client =
        std::make_shared<internal::InMemoryClient>(shared_from_this(), server_, std::move(name));
    const uint64_t session_id = client->session_id();
    std::shared_ptr<Backend> handed_out =
        kvstore::internal::WithOperationMetrics(std::move(client), metrics_);
    MutexLock guard(clients_mu_);
    ForgetDestroyedClientsLocked();
    clients_[handed_out.get()] = Client{handed_out, session_id};
    return handed_out;
  }

  void ExpireSession(const Backend& client) override {
    uint64_t session_id = 0;
    {
      MutexLock guard(clients_mu_);
      auto it = clients_.find(&client);
      // A client of another store, or one destroyed whose address a stranger now has.
      if (it == clients_.end() || it->second.handed_out.expired()) return;
      session_id = it->second.session_id;
    }
    server_->ExpireSession(session_id);
  }

  void Compact(int64_t revision) override { server_->Compact(revision); }
  int64_t Revision() const override { return server_->Revision(); }
  void ExpireDueLeases() override { server_->ExpireDueLeases(); }

 private:
  // A client as handed out (with or without the metrics wrapper) and its session.
  struct Client {
    std::weak_ptr<Backend> handed_out;
    uint64_t session_id = 0;
  };

  // Keeps clients_ proportional to the clients alive: sweeps when it has doubled since the last
  // sweep.
  void ForgetDestroyedClientsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(clients_mu_) {
    if (clients_.size() < 2 * clients_after_sweep_ + 16) return;
    std::erase_if(clients_, [](const auto& entry) { return entry.second.handed_out.expired(); });
    clients_after_sweep_ = clients_.size();
  }

  const std::shared_ptr<BackendMetrics> metrics_;
  const std::shared_ptr<internal::InMemoryServer> server_;
  Mutex clients_mu_;  // guards clients_ and clients_after_sweep_
  std::map<const Backend*, Client> clients_ ABSL_GUARDED_BY(clients_mu_);
  size_t clients_after_sweep_ ABSL_GUARDED_BY(clients_mu_) = 0;
};

}  // namespace

std::shared_ptr<InMemoryStore> InMemoryStore::Create(InMemoryOptions opts) {
  return std::make_shared<InMemoryStoreImpl>(std::move(opts));
}

}  // namespace kvstore::memory

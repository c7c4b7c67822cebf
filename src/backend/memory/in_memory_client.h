// One client of an InMemoryStore: a Backend with its own session, as a separate etcd client would
// have. Private to src/backend/memory.
#ifndef KVSTORE_BACKEND_MEMORY_IN_MEMORY_CLIENT_H_
#define KVSTORE_BACKEND_MEMORY_IN_MEMORY_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backend/memory/server.h"
#include "kvstore/backend.h"
#include "kvstore/memory/in_memory_store.h"

namespace kvstore::memory::internal {

class InMemoryClient final : public Backend {
 public:
  // `store` is held so that the store (and its threads) lives as long as any of its clients.
  InMemoryClient(std::shared_ptr<InMemoryStore> store, std::shared_ptr<InMemoryServer> server,
                 std::string name);
  InMemoryClient(const InMemoryClient&) = delete;
  InMemoryClient& operator=(const InMemoryClient&) = delete;
  // Closes the client (see Close).
  ~InMemoryClient() override;

  absl::Status Update(const Context& ctx, std::string_view key, std::string_view value,
                      bool lease) override;
  absl::Status Delete(const Context& ctx, std::string_view key) override;
  void RegisterLeaseExpiredObserver(std::string_view prefix,
                                    std::function<void(std::string_view key)> fn) override;
  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override;
  absl::StatusOr<std::optional<std::string>> Get(const Context& ctx, std::string_view key) override;
  absl::StatusOr<KeyValuePairs> ListPrefix(const Context& ctx, std::string_view prefix) override;
  absl::StatusOr<bool> UpdateIfDifferent(const Context& ctx, std::string_view key,
                                         std::string_view value, bool lease) override;
  absl::StatusOr<bool> CreateOnly(const Context& ctx, std::string_view key, std::string_view value,
                                  bool lease) override;
  absl::Status DeletePrefix(const Context& ctx, std::string_view prefix) override;
  BackendStatus Status() const override;
  // Stops the session's keep-alive (its leases run out one TTL later on the store's clock), ends
  // its watches and its lease-expired observers. Later operations return FailedPrecondition.
  void Close() override;

  uint64_t session_id() const { return session_id_; }

 private:
  // OK, the context's error, or FailedPrecondition once closed.
  absl::Status CheckUsable(const Context& ctx) const;
  // CheckUsable plus the key and value limits.
  absl::Status CheckWrite(const Context& ctx, std::string_view key, std::string_view value) const;
  absl::Status ClosedError() const;

  const std::shared_ptr<InMemoryStore> store_;
  const std::shared_ptr<InMemoryServer> server_;
  const std::string name_;
  const std::shared_ptr<LeaseObservers> observers_;
  const uint64_t session_id_;
  std::atomic<bool> closed_{false};
};

}  // namespace kvstore::memory::internal

#endif  // KVSTORE_BACKEND_MEMORY_IN_MEMORY_CLIENT_H_

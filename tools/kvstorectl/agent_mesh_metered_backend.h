// A Backend decorator that records cilium_kvstore_operations_duration_seconds for every operation,
// as Cilium's etcd client does. The tool wraps its backends with it because the backends take no
// metrics registry of their own.
#ifndef KVSTORE_TOOLS_KVSTORECTL_AGENT_MESH_METERED_BACKEND_H_
#define KVSTORE_TOOLS_KVSTORECTL_AGENT_MESH_METERED_BACKEND_H_

#include <memory>

#include "kvstore/backend.h"
#include "kvstore/store/metrics.h"

namespace kvstorectl {

// Labels: scope = kvstore::GetScopeFromKey(key), kind "read" | "set" | "delete", action the method
// name ("Get", "Update", ...), outcome "success" | "fail". Watches are passed through unmeasured.
class MeteredBackend final : public kvstore::Backend {
 public:
  MeteredBackend(std::shared_ptr<kvstore::Backend> backend,
                 std::shared_ptr<kvstore::store::Metrics> metrics)
      : backend_(std::move(backend)), metrics_(std::move(metrics)) {}

  absl::Status Update(const kvstore::Context& ctx, std::string_view key, std::string_view value,
                      bool lease) override;
  absl::Status Delete(const kvstore::Context& ctx, std::string_view key) override;
  size_t MaxBatchOps() const override { return backend_->MaxBatchOps(); }
  std::vector<absl::Status> ApplyBatch(const kvstore::Context& ctx,
                                       std::span<const kvstore::WriteOp> ops) override;
  void RegisterLeaseExpiredObserver(std::string_view prefix,
                                    std::function<void(std::string_view key)> fn) override;
  std::shared_ptr<kvstore::Watcher> ListAndWatch(const kvstore::Context& ctx,
                                                 std::string_view prefix, size_t capacity) override;
  absl::StatusOr<std::optional<std::string>> Get(const kvstore::Context& ctx,
                                                 std::string_view key) override;
  absl::StatusOr<kvstore::KeyValuePairs> ListPrefix(const kvstore::Context& ctx,
                                                    std::string_view prefix) override;
  absl::StatusOr<bool> UpdateIfDifferent(const kvstore::Context& ctx, std::string_view key,
                                         std::string_view value, bool lease) override;
  absl::StatusOr<bool> CreateOnly(const kvstore::Context& ctx, std::string_view key,
                                  std::string_view value, bool lease) override;
  absl::Status DeletePrefix(const kvstore::Context& ctx, std::string_view prefix) override;
  kvstore::BackendStatus Status() const override { return backend_->Status(); }
  void Close() override { backend_->Close(); }

 private:
  // Runs `op` and records its duration and outcome.
  template <typename Op>
  auto Measure(std::string_view key, std::string_view kind, std::string_view action, Op op)
      -> decltype(op());

  const std::shared_ptr<kvstore::Backend> backend_;
  const std::shared_ptr<kvstore::store::Metrics> metrics_;
};

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_AGENT_MESH_METERED_BACKEND_H_

#include "agent_mesh_metered_backend.h"

#include <algorithm>
#include <chrono>

#include "kvstore/paths.h"

namespace kvstorectl {
namespace {

constexpr std::string_view kRead = "read";
constexpr std::string_view kSet = "set";
constexpr std::string_view kDelete = "delete";

const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

}  // namespace

template <typename Op>
auto MeteredBackend::Measure(std::string_view key, std::string_view kind, std::string_view action,
                             Op op) -> decltype(op()) {
  auto start = std::chrono::steady_clock::now();
  auto result = op();
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  metrics_
      ->OperationDuration(kvstore::GetScopeFromKey(key), kind, action,
                          StatusOf(result).ok() ? "success" : "fail")
      .Observe(elapsed.count());
  return result;
}

absl::Status MeteredBackend::Update(const kvstore::Context& ctx, std::string_view key,
                                    std::string_view value, bool lease) {
  return Measure(key, kSet, "Update", [&] { return backend_->Update(ctx, key, value, lease); });
}

absl::Status MeteredBackend::Delete(const kvstore::Context& ctx, std::string_view key) {
  return Measure(key, kDelete, "Delete", [&] { return backend_->Delete(ctx, key); });
}

// One observation per batch, under the scope of its first key and outcome "fail" when any op
// failed: a batch is one request.
std::vector<absl::Status> MeteredBackend::ApplyBatch(const kvstore::Context& ctx,
                                                     std::span<const kvstore::WriteOp> ops) {
  auto start = std::chrono::steady_clock::now();
  std::vector<absl::Status> results = backend_->ApplyBatch(ctx, ops);
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  if (!ops.empty()) {
    bool ok = std::all_of(results.begin(), results.end(),
                          [](const absl::Status& status) { return status.ok(); });
    metrics_
        ->OperationDuration(kvstore::GetScopeFromKey(ops.front().key), "batch", "ApplyBatch",
                            ok ? "success" : "fail")
        .Observe(elapsed.count());
  }
  return results;
}

void MeteredBackend::RegisterLeaseExpiredObserver(std::string_view prefix,
                                                  std::function<void(std::string_view key)> fn) {
  backend_->RegisterLeaseExpiredObserver(prefix, std::move(fn));
}

std::shared_ptr<kvstore::Watcher> MeteredBackend::ListAndWatch(const kvstore::Context& ctx,
                                                               std::string_view prefix,
                                                               size_t capacity) {
  return backend_->ListAndWatch(ctx, prefix, capacity);
}

absl::StatusOr<std::optional<std::string>> MeteredBackend::Get(const kvstore::Context& ctx,
                                                               std::string_view key) {
  return Measure(key, kRead, "Get", [&] { return backend_->Get(ctx, key); });
}

absl::StatusOr<kvstore::KeyValuePairs> MeteredBackend::ListPrefix(const kvstore::Context& ctx,
                                                                  std::string_view prefix) {
  return Measure(prefix, kRead, "ListPrefix", [&] { return backend_->ListPrefix(ctx, prefix); });
}

absl::StatusOr<bool> MeteredBackend::UpdateIfDifferent(const kvstore::Context& ctx,
                                                       std::string_view key, std::string_view value,
                                                       bool lease) {
  return Measure(key, kSet, "UpdateIfDifferent",
                 [&] { return backend_->UpdateIfDifferent(ctx, key, value, lease); });
}

absl::StatusOr<bool> MeteredBackend::CreateOnly(const kvstore::Context& ctx, std::string_view key,
                                                std::string_view value, bool lease) {
  return Measure(key, kSet, "CreateOnly",
                 [&] { return backend_->CreateOnly(ctx, key, value, lease); });
}

absl::Status MeteredBackend::DeletePrefix(const kvstore::Context& ctx, std::string_view prefix) {
  return Measure(prefix, kDelete, "DeletePrefix",
                 [&] { return backend_->DeletePrefix(ctx, prefix); });
}

}  // namespace kvstorectl

#include "metrics/recorders.h"

#include <algorithm>
#include <functional>
#include <string>
#include <utility>

#include "kvstore/paths.h"

namespace kvstore::internal {
namespace {

constexpr std::string_view kRead = "read";
constexpr std::string_view kSet = "set";
constexpr std::string_view kDelete = "delete";

const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class MeteredBackend final : public Backend {
 public:
  MeteredBackend(std::shared_ptr<Backend> backend, std::shared_ptr<BackendMetrics> metrics)
      : backend_(std::move(backend)), metrics_(std::move(metrics)) {}

  absl::Status Update(const Context& ctx, std::string_view key, std::string_view value,
                      bool lease) override {
    return Measure(key, kSet, "Update", [&] { return backend_->Update(ctx, key, value, lease); });
  }
  absl::Status Delete(const Context& ctx, std::string_view key) override {
    return Measure(key, kDelete, "Delete", [&] { return backend_->Delete(ctx, key); });
  }
  size_t MaxBatchOps() const override { return backend_->MaxBatchOps(); }
  std::vector<absl::Status> ApplyBatch(const Context& ctx, std::span<const WriteOp> ops) override {
    const auto start = std::chrono::steady_clock::now();
    std::vector<absl::Status> results = backend_->ApplyBatch(ctx, ops);
    if (!ops.empty()) {
      const bool ok = std::all_of(results.begin(), results.end(),
                                  [](const absl::Status& status) { return status.ok(); });
      metrics_
          ->OperationDuration(GetScopeFromKey(ops.front().key), "batch", "ApplyBatch",
                              ok ? "success" : "fail")
          .Observe(SecondsSince(start));
    }
    return results;
  }
  void RegisterLeaseExpiredObserver(std::string_view prefix,
                                    std::function<void(std::string_view key)> fn) override {
    backend_->RegisterLeaseExpiredObserver(prefix, std::move(fn));
  }
  // Watches are measured by the backend itself (events queue time).
  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override {
    return backend_->ListAndWatch(ctx, prefix, capacity);
  }
  std::shared_ptr<Watcher> ListAndWatchWith(const Context& ctx, std::string_view prefix,
                                            size_t capacity, const WatchOptions& options) override {
    return backend_->ListAndWatchWith(ctx, prefix, capacity, options);
  }
  absl::StatusOr<std::optional<std::string>> Get(const Context& ctx,
                                                 std::string_view key) override {
    return Measure(key, kRead, "Get", [&] { return backend_->Get(ctx, key); });
  }
  absl::StatusOr<KeyValuePairs> ListPrefix(const Context& ctx, std::string_view prefix) override {
    return Measure(prefix, kRead, "ListPrefix", [&] { return backend_->ListPrefix(ctx, prefix); });
  }
  absl::StatusOr<bool> UpdateIfDifferent(const Context& ctx, std::string_view key,
                                         std::string_view value, bool lease) override {
    return Measure(key, kSet, "UpdateIfDifferent",
                   [&] { return backend_->UpdateIfDifferent(ctx, key, value, lease); });
  }
  absl::StatusOr<bool> CreateOnly(const Context& ctx, std::string_view key, std::string_view value,
                                  bool lease) override {
    return Measure(key, kSet, "CreateOnly",
                   [&] { return backend_->CreateOnly(ctx, key, value, lease); });
  }
  absl::Status DeletePrefix(const Context& ctx, std::string_view prefix) override {
    return Measure(prefix, kDelete, "DeletePrefix",
                   [&] { return backend_->DeletePrefix(ctx, prefix); });
  }
  void UpdateAsync(const Context& ctx, std::string_view key, std::string_view value, bool lease,
                   StatusCallback done) override {
    backend_->UpdateAsync(ctx, key, value, lease, Measured(key, kSet, "Update", std::move(done)));
  }
  void DeleteAsync(const Context& ctx, std::string_view key, StatusCallback done) override {
    backend_->DeleteAsync(ctx, key, Measured(key, kDelete, "Delete", std::move(done)));
  }
  void GetAsync(const Context& ctx, std::string_view key, GetCallback done) override {
    backend_->GetAsync(ctx, key, Measured(key, kRead, "Get", std::move(done)));
  }
  BackendStatus Status() const override { return backend_->Status(); }
  std::vector<WatchFreshness> Watches() const override { return backend_->Watches(); }
  void Close() override { backend_->Close(); }

 private:
  // Runs `op` and records its duration and outcome.
  template <typename Op>
  auto Measure(std::string_view key, std::string_view kind, std::string_view action, Op op)
      -> decltype(op()) {
    const auto start = std::chrono::steady_clock::now();
    auto result = op();
    metrics_
        ->OperationDuration(GetScopeFromKey(key), kind, action,
                            StatusOf(result).ok() ? "success" : "fail")
        .Observe(SecondsSince(start));
    return result;
  }

  // `done`, recording the duration and outcome of the asynchronous call it completes.
  template <typename Result>
  std::function<void(Result)> Measured(std::string_view key, std::string_view kind,
                                       std::string_view action, std::function<void(Result)> done) {
    return [metrics = metrics_, scope = std::string(GetScopeFromKey(key)), kind, action,
            start = std::chrono::steady_clock::now(), done = std::move(done)](Result result) {
      metrics->OperationDuration(scope, kind, action, StatusOf(result).ok() ? "success" : "fail")
          .Observe(SecondsSince(start));
      done(std::move(result));
    };
  }

  const std::shared_ptr<Backend> backend_;
  const std::shared_ptr<BackendMetrics> metrics_;
};

}  // namespace

std::shared_ptr<Backend> WithOperationMetrics(std::shared_ptr<Backend> backend,
                                              std::shared_ptr<BackendMetrics> metrics) {
  if (metrics == nullptr || backend == nullptr) return backend;
  return std::make_shared<MeteredBackend>(std::move(backend), std::move(metrics));
}

EventsQueueRecorder::EventsQueueRecorder(BackendMetrics* metrics, std::string_view prefix)
    : metrics_(metrics), scope_(metrics == nullptr ? "" : GetScopeFromKey(prefix)) {}

void EventsQueueRecorder::Accepted(EventType type, TimePoint received) {
  if (metrics_ == nullptr) return;
  prometheus::Histogram*& histogram = histograms_[static_cast<size_t>(type)];
  if (histogram == nullptr) histogram = &metrics_->EventsQueueTime(scope_, EventTypeName(type));
  histogram->Observe(SecondsSince(received));
}

}  // namespace kvstore::internal

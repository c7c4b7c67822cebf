// The etcd v3 backend: Backend's operations as etcd KV requests and transactions, leases from the
// LeaseManager, watchers from the WatchHub, all over one RpcClient.
#include "kvstore/etcd/etcd_backend.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backend/etcd/completion.h"
#include "backend/etcd/completion_poller.h"
#include "backend/etcd/errors.h"
#include "backend/etcd/executor.h"
#include "backend/etcd/key_range.h"
#include "backend/etcd/lease_manager.h"
#include "backend/etcd/rpc_client.h"
#include "backend/etcd/txn_limits.h"
#include "backend/etcd/watch_hub.h"
#include "core/blocking_pool.h"
#include "core/write_checks.h"
#include "kvstore/mutex.h"
#include "kvstore/workqueue/rate_limiter.h"
#include "metrics/recorders.h"
#include "spdlog/spdlog.h"

namespace kvstore::etcd {
namespace {

// Threads for delivery, timers and observers, whatever the number of watchers.
// A configured page size above this lists with one unpaginated request.
constexpr size_t kUnpaginated = size_t{1} << 40;

class EtcdBackend final : public Backend {
 public:
  EtcdBackend(const EtcdConfig& config, std::unique_ptr<RpcClient> rpc)
      : config_(config),
        page_size_(config.list_page_size == 0 ? kDefaultListPageSize
                   : config.list_page_size >= kUnpaginated
                       ? 0
                       : static_cast<int64_t>(config.list_page_size)),
        rpc_(std::move(rpc)),
        // Its tasks may wait on etcd (a login, a fail-over, a lease grant), so they run on the
        // elastic pool for blocking work, never holding the threads that run everything else.
        executor_(std::make_unique<Executor>(nullptr, internal::SharedBlockingPool())),
        leases_(std::make_shared<LeaseManager>(rpc_.get(), executor_.get(), config.lease_ttl,
                                               config.max_keys_per_lease, config_.metrics.get())),
        hub_(std::make_shared<WatchHub>(rpc_.get(), executor_.get(), page_size_,
                                        config_.metrics.get(), config.request_timeout)),
        limiter_(config.qps > 0 ? std::make_unique<workqueue::BucketRateLimiter<int>>(config.qps, 1)
                                : nullptr),
        bootstrap_limiter_(
            config.bootstrap_qps > 0
                ? std::make_unique<workqueue::BucketRateLimiter<int>>(config.bootstrap_qps, 1)
                : nullptr),
        bootstrapping_(bootstrap_limiter_ != nullptr) {
    if (bootstrapping_) {
      spdlog::info("etcd at {}: {} requests a second until the first watcher is synced, then {}",
                   rpc_->EndpointList(), config.bootstrap_qps,
                   config.qps > 0 ? absl::StrCat(config.qps) : std::string("no limit"));
      hub_->SetListDoneHook([this] {
        if (bootstrapping_.exchange(false)) {
          spdlog::info(
              "etcd at {}: bootstrap complete, request rate now {}", rpc_->EndpointList(),
              config_.qps > 0 ? absl::StrCat(config_.qps, " a second") : std::string("unlimited"));
        }
      });
    }
  }

  ~EtcdBackend() override { Close(); }

  absl::StatusOr<std::optional<std::string>> Get(const Context& ctx,
                                                 std::string_view key) override {
    if (absl::Status s = ValidateAndThrottle(ctx, internal::CheckKeyNotEmpty(key)); !s.ok()) {
      return s;
    }
    if (internal::CannotExist(key)) return std::optional<std::string>();
    etcdserverpb::RangeRequest request;
    request.set_key(std::string(key));
    etcdserverpb::RangeResponse response;
    absl::Status status =
        rpc_->Range(ctx, absl::StrCat("get ", internal::DescribeKey(key)), request, &response);
    if (!status.ok()) return status;
    if (response.kvs_size() == 0) return std::optional<std::string>();
    return std::optional<std::string>(std::move(*response.mutable_kvs(0)->mutable_value()));
  }

  void GetAsync(const Context& ctx, std::string_view key, GetCallback done) override {
    if (absl::Status s = Validate(ctx, internal::CheckKeyNotEmpty(key)); !s.ok()) {
      done(s);
      return;
    }
    if (internal::CannotExist(key)) {
      done(std::optional<std::string>());
      return;
    }
    auto completion =
        std::make_shared<Completion<absl::StatusOr<std::optional<std::string>>>>(std::move(done));
    etcdserverpb::RangeRequest request;
    request.set_key(key.data(), key.size());
    Throttled([this, ctx, what = absl::StrCat("get ", internal::DescribeKey(key)),
               request = std::move(request), completion]() mutable {
      rpc_->RangeAsync(
          ctx, std::move(what), std::move(request),
          [completion](const absl::Status& status, etcdserverpb::RangeResponse& response) {
            if (!status.ok()) {
              (*completion)(status);
            } else if (response.kvs_size() == 0) {
              (*completion)(std::optional<std::string>());
            } else {
              (*completion)(
                  std::optional<std::string>(std::move(*response.mutable_kvs(0)->mutable_value())));
            }
          });
    });
  }

  absl::StatusOr<KeyValuePairs> ListPrefix(const Context& ctx, std::string_view prefix) override {
    if (absl::Status s = ValidateAndThrottle(ctx); !s.ok()) return s;
    const std::string what = absl::StrCat("list of prefix ", internal::DescribeKey(prefix));
    KeyValuePairs result;
    ListPager pager(prefix, page_size_);
    for (int restarts = 0;;) {
      etcdserverpb::RangeResponse response;
      absl::Status status = rpc_->Range(ctx, what, pager.NextRequest(), &response);
      if (IsCompactedError(status) && restarts < 3) {
        // The pinned revision was compacted between two pages: start over at a fresh one.
        ++restarts;
        result.clear();
        pager.Restart();
        continue;
      }
      if (!status.ok()) return status;
      const bool more = pager.Advance(response);
      for (mvccpb::KeyValue& kv : *response.mutable_kvs()) {
        result.insert_or_assign(
            kv.key(), Value{std::move(*kv.mutable_value()), kv.mod_revision(), kv.lease()});
      }
      if (!more) break;
    }
    return result;
  }

  absl::Status Update(const Context& ctx, std::string_view key, std::string_view value,
                      bool lease) override {
    if (absl::Status s = ValidateAndThrottle(ctx, internal::CheckWrite(key, value)); !s.ok())
      return s;
    return WithSessionLease(ctx, key, lease, [&](int64_t lease_id) {
      etcdserverpb::PutRequest request;
      FillPut(request, key, value, lease_id);
      etcdserverpb::PutResponse response;
      absl::Status status = rpc_->Put(ctx, absl::StrCat("update ", internal::DescribeKey(key)),
                                      std::move(request), &response);
      if (status.ok() && !lease) leases_->DetachKey(key);
      return status;
    });
  }

  void UpdateAsync(const Context& ctx, std::string_view key, std::string_view value, bool lease,
                   StatusCallback done) override {
    if (absl::Status s = Validate(ctx, internal::CheckWrite(key, value)); !s.ok()) {
      done(s);
      return;
    }
    auto write = std::make_shared<AsyncPut>(ctx, key, value, lease, std::move(done));
    Throttled([this, write] { PutWithLease(write, /*attempt=*/0); });
  }

  void DeleteAsync(const Context& ctx, std::string_view key, StatusCallback done) override {
    if (absl::Status s = Validate(ctx, internal::CheckKeyNotEmpty(key)); !s.ok()) {
      done(s);
      return;
    }
    if (internal::CannotExist(key)) {
      done(absl::OkStatus());
      return;
    }
    auto completion = std::make_shared<Completion<absl::Status>>(std::move(done));
    Throttled([this, ctx, key = std::string(key), completion] {
      etcdserverpb::DeleteRangeRequest request;
      request.set_key(key);
      rpc_->DeleteRangeAsync(
          ctx, absl::StrCat("delete ", internal::DescribeKey(key)), std::move(request),
          [this, key, completion](const absl::Status& status, etcdserverpb::DeleteRangeResponse&) {
            if (status.ok()) leases_->DetachKey(key);
            (*completion)(status);
          });
    });
  }

  size_t MaxBatchOps() const override { return txn_limits_.max_ops(); }

  // Each chunk of at most MaxBatchOps() operations and txn_limits_' bytes is one unconditional
  // transaction, so its writes succeed or fail together.
  std::vector<absl::Status> ApplyBatch(const Context& ctx, std::span<const WriteOp> ops) override {
    std::vector<absl::Status> results(ops.size());
    std::vector<size_t> valid;  // indexes into ops
    valid.reserve(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) {
      const WriteOp& op = ops[i];
      // A delete of a key that cannot exist succeeds without being sent.
      results[i] =
          op.value ? internal::CheckWrite(op.key, *op.value) : internal::CheckKeyNotEmpty(op.key);
      if (results[i].ok() && (op.value || !internal::CannotExist(op.key))) valid.push_back(i);
    }
    ApplyInChunks(ctx, ops, valid, results);
    return results;
  }

  absl::Status Delete(const Context& ctx, std::string_view key) override {
    if (absl::Status s = ValidateAndThrottle(ctx, internal::CheckKeyNotEmpty(key)); !s.ok()) {
      return s;
    }
    if (internal::CannotExist(key)) return absl::OkStatus();
    etcdserverpb::DeleteRangeRequest request;
    request.set_key(std::string(key));
    etcdserverpb::DeleteRangeResponse response;
    absl::Status status = rpc_->DeleteRange(
        ctx, absl::StrCat("delete ", internal::DescribeKey(key)), std::move(request), &response);
    if (status.ok()) leases_->DetachKey(key);
    return status;
  }

  absl::StatusOr<bool> UpdateIfDifferent(const Context& ctx, std::string_view key,
                                         std::string_view value, bool lease) override {
    if (lease && leases_->LeaseOfKey(key) == 0) {
      // This session never attached the key to one of its leases, so etcd cannot hold it on
      // one: it differs, and a plain put writes it. This matters under a burst of writes
      // (agents publishing their keys): etcd 3.4 copies its whole buffer of uncommitted writes
      // for every transaction and every range, so there a comparison cost etcd several times
      // the write itself (6.8 GB allocated for 10,000 of them while 10 watchers were attached).
      // Update checks the arguments and waits for the rate limiter itself.
      absl::Status status = Update(ctx, key, value, lease);
      if (!status.ok()) return status;
      return true;
    }
    if (absl::Status s = ValidateAndThrottle(ctx, internal::CheckWrite(key, value)); !s.ok())
      return s;
    return WithSessionLease(ctx, key, lease, [&](int64_t lease_id) -> absl::StatusOr<bool> {
      // Nothing to do when the value (and, with a lease, the lease) is already the same;
      // otherwise write. A missing key fails the value comparison.
      etcdserverpb::TxnRequest request;
      etcdserverpb::Compare* same_value = request.add_compare();
      same_value->set_key(std::string(key));
      same_value->set_target(etcdserverpb::Compare::VALUE);
      same_value->set_result(etcdserverpb::Compare::EQUAL);
      same_value->set_value(std::string(value));
      if (lease) {
        etcdserverpb::Compare* same_lease = request.add_compare();
        same_lease->set_key(std::string(key));
        same_lease->set_target(etcdserverpb::Compare::LEASE);
        same_lease->set_result(etcdserverpb::Compare::EQUAL);
        same_lease->set_lease(lease_id);
      }
      FillPut(*request.add_failure()->mutable_request_put(), key, value, lease_id);
      etcdserverpb::TxnResponse response;
      absl::Status status =
          rpc_->Txn(ctx, absl::StrCat("update-if-different ", internal::DescribeKey(key)), request,
                    &response);
      if (!status.ok()) return status;
      bool wrote = !response.succeeded();
      if (wrote && !lease) leases_->DetachKey(key);
      return wrote;
    });
  }

  absl::StatusOr<bool> CreateOnly(const Context& ctx, std::string_view key, std::string_view value,
                                  bool lease) override {
    if (absl::Status s = ValidateAndThrottle(ctx, internal::CheckWrite(key, value)); !s.ok())
      return s;
    const bool attached_before = leases_->LeaseOfKey(key) != 0;
    return WithSessionLease(ctx, key, lease, [&](int64_t lease_id) -> absl::StatusOr<bool> {
      etcdserverpb::TxnRequest request;
      etcdserverpb::Compare* missing = request.add_compare();
      missing->set_key(std::string(key));
      missing->set_target(etcdserverpb::Compare::VERSION);
      missing->set_result(etcdserverpb::Compare::EQUAL);
      missing->set_version(0);
      FillPut(*request.add_success()->mutable_request_put(), key, value, lease_id);
      etcdserverpb::TxnResponse response;
      absl::Status status = rpc_->Txn(ctx, absl::StrCat("create-only ", internal::DescribeKey(key)),
                                      request, &response);
      if (!status.ok()) return status;
      // Someone else's key is not ours to keep alive.
      if (lease && !response.succeeded() && !attached_before) leases_->DetachKey(key);
      return response.succeeded();
    });
  }

  absl::Status DeletePrefix(const Context& ctx, std::string_view prefix) override {
    if (absl::Status s = ValidateAndThrottle(ctx); !s.ok()) return s;
    const KeyRange range = PrefixRange(prefix);
    etcdserverpb::DeleteRangeRequest request;
    request.set_key(range.start);
    request.set_range_end(range.end);
    etcdserverpb::DeleteRangeResponse response;
    absl::Status status =
        rpc_->DeleteRange(ctx, absl::StrCat("delete of prefix ", internal::DescribeKey(prefix)),
                          std::move(request), &response);
    if (status.ok()) leases_->DetachPrefix(prefix);
    return status;
  }

  void RegisterLeaseExpiredObserver(std::string_view prefix,
                                    std::function<void(std::string_view key)> fn) override {
    leases_->SetObserver(prefix, std::move(fn));
  }

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override {
    return hub_->ListAndWatch(ctx, prefix, capacity);
  }
  std::shared_ptr<Watcher> ListAndWatchWith(const Context& ctx, std::string_view prefix,
                                            size_t capacity, const WatchOptions& options) override {
    return hub_->ListAndWatch(ctx, prefix, capacity, options);
  }

  std::vector<WatchFreshness> Watches() const override { return hub_->Freshness(); }

  BackendStatus Status() const override {
    if (closed_) return {BackendState::kClosed, "etcd: closed"};
    auto timeout = std::min<std::chrono::milliseconds>(config_.request_timeout,
                                                       std::chrono::milliseconds(5000));
    std::vector<RpcClient::EndpointStatus> results = rpc_->StatusOfEndpoints(timeout);
    size_t connected = 0;
    bool has_leader = false;
    std::vector<std::string> parts;
    for (const RpcClient::EndpointStatus& r : results) {
      if (!r.status.ok()) {
        parts.push_back(absl::StrCat(r.endpoint, " - ", r.status.message()));
        continue;
      }
      ++connected;
      const etcdserverpb::StatusResponse& s = r.response;
      has_leader = has_leader || s.leader() != 0;
      bool is_leader = s.leader() != 0 && s.leader() == s.header().member_id();
      parts.push_back(absl::StrCat(r.endpoint, " - ", s.version(), is_leader ? " (Leader)" : "",
                                   s.leader() == 0 ? " (no leader)" : ""));
    }
    BackendStatus status;
    status.state = connected == 0                              ? BackendState::kFailure
                   : connected < results.size() || !has_leader ? BackendState::kWarning
                                                               : BackendState::kOk;
    status.message = absl::StrCat(
        "etcd: ", connected, "/", results.size(), " connected, leases=", leases_->NumLeases(),
        ", watchers=", hub_->NumWatchers(), ", has-quorum=", has_leader ? "true" : "false", ": ",
        absl::StrJoin(parts, "; "));
    if (std::vector<std::string> stalled = hub_->StalledWatchers(); !stalled.empty()) {
      if (status.state == BackendState::kOk) status.state = BackendState::kWarning;
      absl::StrAppend(&status.message,
                      "; watchers that cannot resume: ", absl::StrJoin(stalled, "; "));
    }
    return status;
  }

  void Close() override {
    {
      MutexLock guard(close_mu_);
      if (closed_) return;
      closed_ = true;
    }
    hub_->Shutdown();
    leases_->Shutdown();
    rpc_->Shutdown();
    executor_->Shutdown();
  }

 private:
  static size_t OpBytes(const WriteOp& op) {
    return op.key.size() + (op.value ? op.value->size() : 0) + TxnLimits::kOpOverheadBytes;
  }

  // Writes the ops at `indexes` (valid ones) in chunks within the current limits; fills their
  // results.
  void ApplyInChunks(const Context& ctx, std::span<const WriteOp> ops,
                     const std::vector<size_t>& indexes, std::vector<absl::Status>& results) {
    const size_t max_ops = txn_limits_.max_ops();
    const size_t max_bytes = txn_limits_.max_bytes();
    std::vector<size_t> chunk;
    size_t chunk_bytes = 0;
    // etcd refuses a transaction that names a key twice.
    std::set<std::string_view> chunk_keys;
    auto flush = [&] {
      if (!chunk.empty()) ApplyChunk(ctx, ops, chunk, chunk_bytes, results);
      chunk.clear();
      chunk_keys.clear();
      chunk_bytes = 0;
    };
    for (size_t i : indexes) {
      const WriteOp& op = ops[i];
      const size_t bytes = OpBytes(op);
      if (chunk.size() >= max_ops || (!chunk.empty() && chunk_bytes + bytes > max_bytes) ||
          chunk_keys.contains(op.key)) {
        flush();
      }
      chunk_keys.insert(op.key);
      chunk.push_back(i);
      chunk_bytes += bytes;
    }
    flush();
  }

  // One transaction of the ops at `chunk` (distinct keys, `bytes` in all); fills their results.
  void ApplyChunk(const Context& ctx, std::span<const WriteOp> ops,
                  const std::vector<size_t>& chunk, size_t bytes,
                  std::vector<absl::Status>& results) {
    auto fail_all = [&](const absl::Status& status) {
      for (size_t i : chunk) results[i] = status;
    };
    if (chunk.size() == 1) {
      const WriteOp& op = ops[chunk[0]];
      results[chunk[0]] = op.value ? Update(ctx, op.key, *op.value, op.lease) : Delete(ctx, op.key);
      return;
    }
    if (absl::Status s = ValidateAndThrottle(ctx); !s.ok()) return fail_all(s);
    etcdserverpb::TxnRequest request;
    request.mutable_success()->Reserve(static_cast<int>(chunk.size()));
    for (size_t i : chunk) {
      const WriteOp& op = ops[i];
      etcdserverpb::RequestOp* request_op = request.add_success();
      if (!op.value) {
        request_op->mutable_request_delete_range()->set_key(op.key.data(), op.key.size());
        continue;
      }
      int64_t lease_id = 0;
      if (op.lease) {
        absl::StatusOr<int64_t> id = leases_->LeaseForKey(ctx, op.key);
        if (!id.ok()) return fail_all(id.status());
        lease_id = *id;
      }
      FillPut(*request_op->mutable_request_put(), op.key, *op.value, lease_id);
    }
    etcdserverpb::TxnResponse response;
    absl::Status status = rpc_->Txn(ctx,
                                    absl::StrCat("batch of ", chunk.size(), " writes from ",
                                                 internal::DescribeKey(ops[chunk.front()].key)),
                                    request, &response);
    if (IsTooManyTxnOpsError(status) || IsRequestTooLargeError(status)) {
      // etcd checks these limits before applying anything: write the same ops again in chunks
      // the server accepts.
      ShrinkBatches(status, chunk.size(), bytes);
      ApplyInChunks(ctx, ops, chunk, results);
      return;
    }
    if (IsLeaseNotFoundError(status)) {
      // Some lease of the batch is gone, and the answer does not say which: write the keys one
      // by one, which finds it and retries with a new lease.
      for (size_t i : chunk) {
        const WriteOp& op = ops[i];
        results[i] = op.value ? Update(ctx, op.key, *op.value, op.lease) : Delete(ctx, op.key);
      }
      return;
    }
    if (!status.ok()) return fail_all(status);
    for (size_t i : chunk) {
      const WriteOp& op = ops[i];
      if (!op.value || !op.lease) leases_->DetachKey(op.key);
      results[i] = absl::OkStatus();
    }
  }

  // The server refused a transaction of `ops` operations and `bytes` bytes for exceeding its
  // --max-txn-ops or --max-request-bytes: later batches of this backend stay at half of that.
  void ShrinkBatches(const absl::Status& refusal, size_t ops, size_t bytes) {
    if (std::optional<size_t> shrunk = txn_limits_.Shrink(refusal, ops, bytes)) {
      spdlog::warn(
          "etcd at {} refused a transaction of {} operations and {} bytes ({}); "
          "batches are now at most {} {}",
          rpc_->EndpointList(), ops, bytes, std::string(refusal.message()), *shrunk,
          IsTooManyTxnOpsError(refusal) ? "operations" : "bytes");
    }
  }

  // What every operation does first: refuses it on a closed backend, a done context or when
  // `validation` (internal::CheckKey / CheckWrite of its input) failed; then waits for the rate
  // limiter.
  // An UpdateAsync in progress.
  struct AsyncPut {
    AsyncPut(const Context& ctx, std::string_view key, std::string_view value, bool lease,
             StatusCallback done)
        : ctx(ctx), key(key), value(value), lease(lease), done(std::move(done)) {}
    const Context ctx;
    const std::string key, value;
    const bool lease;
    Completion<absl::Status> done;
  };

  // Attaches the write to its lease without blocking when it can; a lease to grant first is
  // granted on the executor.
  void PutWithLease(const std::shared_ptr<AsyncPut>& write, int attempt) {
    if (!write->lease) {
      SendPut(write, 0, attempt);
    } else if (std::optional<int64_t> id = leases_->TryLeaseForKey(write->key)) {
      SendPut(write, *id, attempt);
    } else {
      executor_->Post([this, write, attempt] {
        absl::StatusOr<int64_t> id = leases_->LeaseForKey(write->ctx, write->key);
        if (!id.ok()) {
          write->done(id.status());
          return;
        }
        SendPut(write, *id, attempt);
      });
    }
  }

  // As Update's write: a lease found lost is replaced once.
  void SendPut(const std::shared_ptr<AsyncPut>& write, int64_t lease_id, int attempt) {
    etcdserverpb::PutRequest request;
    FillPut(request, write->key, write->value, lease_id);
    rpc_->PutAsync(
        write->ctx, absl::StrCat("update ", internal::DescribeKey(write->key)), std::move(request),
        [this, write, lease_id, attempt](const absl::Status& status, etcdserverpb::PutResponse&) {
          if (write->lease && attempt == 0 && LeaseWasLost(status, write->key, lease_id)) {
            PutWithLease(write, 1);
            return;
          }
          if (status.ok() && !write->lease) leases_->DetachKey(write->key);
          write->done(status);
        });
  }

  // The rate in force: the bootstrap one until the first watcher is synced (when set), then
  // config.qps; null: no limit.
  workqueue::BucketRateLimiter<int>* CurrentLimiter() const {
    return bootstrapping_ ? bootstrap_limiter_.get() : limiter_.get();
  }

  // Runs `start` now, or on the executor once the rate limiter lets the request through.
  void Throttled(std::function<void()> start) {
    if (workqueue::BucketRateLimiter<int>* limiter = CurrentLimiter()) {
      const std::chrono::nanoseconds wait = limiter->When(0);
      if (wait > std::chrono::nanoseconds::zero()) {
        executor_->PostAfter(wait, std::move(start));
        return;
      }
    }
    start();
  }

  absl::Status Validate(const Context& ctx, const absl::Status& validation) const {
    if (closed_) return absl::FailedPreconditionError("etcd backend is closed");
    if (!validation.ok()) return validation;
    if (ctx.Done()) return ctx.Err();
    return absl::OkStatus();
  }

  // Validate for a blocking call, which must not run where the replies are read.
  absl::Status ValidateBlocking(const Context& ctx, const absl::Status& validation) const {
    if (CompletionPoller::OnPollerThread()) {
      return absl::FailedPreconditionError(
          "etcd: a blocking call from the completion of an asynchronous one would wait for "
          "itself; start it asynchronously");
    }
    return Validate(ctx, validation);
  }

  absl::Status ValidateAndThrottle(const Context& ctx,
                                   const absl::Status& validation = absl::OkStatus()) {
    if (absl::Status s = ValidateBlocking(ctx, validation); !s.ok()) return s;
    if (workqueue::BucketRateLimiter<int>* limiter = CurrentLimiter()) {
      const std::chrono::nanoseconds wait = limiter->When(0);
      if (wait > std::chrono::nanoseconds::zero() && ctx.WaitFor(wait)) return ctx.Err();
    }
    return absl::OkStatus();
  }

  // The session lease `key` is to be written with, or 0 when `lease` is false.
  absl::StatusOr<int64_t> LeaseIdFor(const Context& ctx, std::string_view key, bool lease) {
    if (!lease) return 0;
    return leases_->LeaseForKey(ctx, key);
  }

  static void FillPut(etcdserverpb::PutRequest& put, std::string_view key, std::string_view value,
                      int64_t lease_id) {
    put.set_key(key.data(), key.size());
    put.set_value(value.data(), value.size());
    put.set_lease(lease_id);
  }

  static const absl::Status& StatusOf(const absl::Status& status) { return status; }
  template <typename T>
  static const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
    return result.status();
  }

  // Runs `write(lease_id)` with the lease a write of `key` uses (0 without `lease`). When etcd
  // says that lease does not exist (it expired meanwhile), the session lease is lost, and the
  // write runs once more with a new one.
  template <typename Write>
  std::invoke_result_t<Write, int64_t> WithSessionLease(const Context& ctx, std::string_view key,
                                                        bool lease, Write write) {
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<int64_t> leased = LeaseIdFor(ctx, key, lease);
      if (!leased.ok()) return leased.status();
      std::invoke_result_t<Write, int64_t> result = write(*leased);
      if (lease && attempt == 0 && LeaseWasLost(StatusOf(result), key, *leased)) continue;
      return result;
    }
  }

  // When etcd says the lease of a write does not exist, the session lease is lost: observers
  // learn about its other keys (the caller retries `key` itself at once, with a new lease).
  bool LeaseWasLost(const absl::Status& status, std::string_view key, int64_t lease_id) {
    if (!IsLeaseNotFoundError(status)) return false;
    leases_->DetachKey(key);
    leases_->OnLeaseLost(lease_id, ToStd(status.message()));
    return true;
  }

  const EtcdConfig config_;
  const int64_t page_size_;  // 0: unpaginated
  std::unique_ptr<RpcClient> rpc_;
  std::unique_ptr<Executor> executor_;
  std::shared_ptr<LeaseManager> leases_;
  std::shared_ptr<WatchHub> hub_;
  // Spaces requests to config.qps a second (a bucket of one); null: no limit.
  const std::unique_ptr<workqueue::BucketRateLimiter<int>> limiter_;
  // config.bootstrap_qps, in force while bootstrapping_; null: none.
  const std::unique_ptr<workqueue::BucketRateLimiter<int>> bootstrap_limiter_;
  std::atomic<bool> bootstrapping_;
  // Where batches start, and how a server configured lower makes them smaller (ShrinkBatches).
  TxnLimits txn_limits_;
  Mutex close_mu_;
  std::atomic<bool> closed_{false};
};

}  // namespace

absl::StatusOr<std::shared_ptr<Backend>> NewEtcdBackend(EtcdConfig config) {
  absl::StatusOr<std::unique_ptr<RpcClient>> rpc = RpcClient::Create(config);
  if (!rpc.ok()) return rpc.status();
  return internal::WithOperationMetrics(std::make_shared<EtcdBackend>(config, std::move(*rpc)),
                                        config.metrics);
}

}  // namespace kvstore::etcd

#include "backend/etcd/write_batcher.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "backend/etcd/errors.h"

namespace kvstore::etcd {
namespace {

std::string_view KeyOf(const etcdserverpb::RequestOp& op) {
  return op.has_request_put() ? op.request_put().key() : op.request_delete_range().key();
}

size_t BytesOf(const etcdserverpb::RequestOp& op, size_t overhead) {
  return op.has_request_put()
             ? op.request_put().key().size() + op.request_put().value().size() + overhead
             : op.request_delete_range().key().size() + overhead;
}

// A transaction's failure that says nothing of any one write in it: its outcome is unknown (or
// etcd is overloaded), and each write would have had the same answer alone.
bool SameForEveryWrite(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

}  // namespace

// One caller's write, from Submit to its result.
struct WriteBatcher::Pending {
  Pending(Write write, Done done) : write(std::move(write)), done(std::move(done)) {}

  // Runs `done` unless it ran already (the context may end while the write is in flight).
  // `from_ctx`: called by the context's callback, which is not to be removed.
  void Finish(const absl::Status& status, etcdserverpb::ResponseOp& response,
              bool from_ctx = false) {
    if (finished.exchange(true)) return;
    if (!from_ctx && ctx_callback != 0) write.ctx.RemoveCallback(ctx_callback);
    Done run = std::move(done);
    run(status, response);
  }
  void Finish(const absl::Status& status, bool from_ctx = false) {
    etcdserverpb::ResponseOp none;
    Finish(status, none, from_ctx);
  }
  bool finished_already() const { return finished.load(); }

  Write write;
  Done done;
  std::atomic<bool> finished = false;
  // On the caller's context while the write waits or travels in a transaction: ends it with the
  // context's error. Set before the write is shared; read only by the Finish that runs `done`.
  uint64_t ctx_callback = 0;
};

WriteBatcher::WriteBatcher(Limits limits, SendOne send_one, SendTxn send_txn)
    : direct_(std::max<size_t>(limits.direct, 1)),
      op_overhead_bytes_(limits.op_overhead_bytes),
      txn_limits_(limits.max_ops, limits.max_bytes),
      send_one_(std::move(send_one)),
      send_txn_(std::move(send_txn)) {}

void WriteBatcher::Submit(Write write, Done done) {
  auto pending = std::make_shared<Pending>(std::move(write), std::move(done));
  {
    MutexLock guard(mu_);
    if (in_flight_ < direct_) {
      ++in_flight_;
      guard.unlock();
      Dispatch({std::move(pending)});
      return;
    }
  }
  // It may wait: its context ends it meanwhile. Registered before anyone else can see it.
  const Context& ctx = pending->write.ctx;
  pending->ctx_callback = ctx.AddCallback([weak = std::weak_ptr<Pending>(pending)] {
    PendingPtr pending = weak.lock();
    if (pending == nullptr) return;
    const absl::Status err = pending->write.ctx.Err();
    pending->Finish(
        absl::Status(err.code(), absl::StrCat("etcd ", pending->write.what, ": ", err.message())),
        /*from_ctx=*/true);
  });
  if (pending->finished_already()) return;  // the context was done
  {
    MutexLock guard(mu_);
    if (in_flight_ >= direct_) {
      waiting_.push_back(std::move(pending));
      return;
    }
    // A request ended meanwhile and nothing waits (see waiting_): it goes now.
    ++in_flight_;
  }
  Dispatch({std::move(pending)});
}

std::vector<WriteBatcher::PendingPtr> WriteBatcher::TakeBatch() {
  const size_t max_ops = txn_limits_.max_ops();
  const size_t max_bytes = txn_limits_.max_bytes();
  std::vector<PendingPtr> batch;
  absl::flat_hash_set<std::string_view> keys;
  size_t bytes = 0;
  while (!waiting_.empty() && batch.size() < max_ops) {
    const PendingPtr& next = waiting_.front();
    if (next->finished_already()) {
      waiting_.pop_front();
      continue;
    }
    const etcdserverpb::RequestOp& op = next->write.op;
    const size_t op_bytes = BytesOf(op, op_overhead_bytes_);
    // etcd refuses a transaction naming a key twice; a later write of a key goes later.
    if (!batch.empty() && (bytes + op_bytes > max_bytes || keys.contains(KeyOf(op)))) break;
    keys.insert(KeyOf(op));
    bytes += op_bytes;
    batch.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  return batch;
}

void WriteBatcher::Ended() {
  std::vector<PendingPtr> batch;
  {
    MutexLock guard(mu_);
    batch = TakeBatch();
    if (batch.empty()) {
      --in_flight_;
      return;
    }
  }
  // Its slot goes on to the next request.
  Dispatch(std::move(batch));
}

void WriteBatcher::Dispatch(std::vector<PendingPtr> batch) {
  if (batch.size() == 1) {
    PendingPtr pending = std::move(batch.front());
    send_one_(pending->write,
              [this, pending](const absl::Status& status, etcdserverpb::ResponseOp& response) {
                // The next request first, so that etcd is never left idle by a slow caller.
                Ended();
                pending->Finish(status, response);
              });
    return;
  }
  struct Shared {
    std::vector<PendingPtr> batch;
    etcdserverpb::TxnRequest request;
  };
  auto shared = std::make_shared<Shared>();
  shared->request.mutable_success()->Reserve(static_cast<int>(batch.size()));
  // The operations move into the request, and back to their writes if they go again alone.
  for (const PendingPtr& pending : batch) shared->request.add_success()->Swap(&pending->write.op);
  shared->batch = std::move(batch);
  transactions_.fetch_add(1, std::memory_order_relaxed);
  batched_writes_.fetch_add(shared->batch.size(), std::memory_order_relaxed);
  const etcdserverpb::TxnRequest& request = shared->request;
  send_txn_(absl::StrCat("transaction of ", shared->batch.size(), " coalesced writes"), request,
            [this, shared](const absl::Status& status, etcdserverpb::TxnResponse& response) {
              Ended();
              Conclude(shared->batch, status, shared->request, response);
            });
}

void WriteBatcher::Conclude(const std::vector<PendingPtr>& batch, const absl::Status& status,
                            etcdserverpb::TxnRequest& request,
                            etcdserverpb::TxnResponse& response) {
  if (status.ok() && response.responses_size() == static_cast<int>(batch.size())) {
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i]->Finish(status, *response.mutable_responses(static_cast<int>(i)));
    }
    return;
  }
  if (status.ok()) {
    // etcd answers an unconditional transaction with one response per operation.
    const absl::Status wrong =
        absl::InternalError(absl::StrCat("etcd answered a transaction of ", batch.size(),
                                         " writes with ", response.responses_size(), " responses"));
    for (const PendingPtr& pending : batch) pending->Finish(wrong);
    return;
  }
  if (SameForEveryWrite(status)) {
    for (const PendingPtr& pending : batch) {
      pending->Finish(absl::Status(
          status.code(), absl::StrCat("etcd ", pending->write.what, ": ", status.message())));
    }
    return;
  }
  // A size refusal also makes later transactions smaller.
  txn_limits_.Shrink(status, batch.size(), static_cast<size_t>(request.ByteSizeLong()));

  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->write.op.Swap(request.mutable_success(static_cast<int>(i)));
    SendAlone(batch[i]);
  }
}

void WriteBatcher::SendAlone(const PendingPtr& pending) {
  if (pending->finished_already()) return;
  send_one_(pending->write,
            [pending](const absl::Status& status, etcdserverpb::ResponseOp& response) {
              pending->Finish(status, response);
            });
}

}  // namespace kvstore::etcd

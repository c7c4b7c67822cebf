// Coalesces single-key writes that queue behind writes in flight into one etcd transaction: the
// client-side counterpart of etcd's own batching of proposals, which cuts the per-request cost
// (gRPC, HTTP/2, etcd's request handling) that dominates a small write.
#ifndef KVSTORE_BACKEND_ETCD_WRITE_BATCHER_H_
#define KVSTORE_BACKEND_ETCD_WRITE_BATCHER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "backend/etcd/txn_limits.h"
#include "kvstore/context.h"
#include "kvstore/mutex.h"
#include "rpc.pb.h"

namespace kvstore::etcd {

// Single-key writes (a put, or a delete of one key without a range) go to etcd at once while
// fewer than `direct` of them are in flight. Those that arrive while `direct` are in flight wait
// for one to end and then go together, in arrival order, as one unconditional transaction of
// distinct keys within etcd's limits (operations, bytes): no timer, and no wait at all while the
// client is not busy. Each write keeps its own result:
// - a transaction that succeeded gives each write its own response;
// - one refused as a whole for a reason that may concern only some of its writes (a permission,
//   a lease gone, a limit, a bad request) is sent again as separate requests, so that each write
//   gets the answer it would have had alone (a refused limit also shrinks later transactions);
// - one whose outcome is unknown (unavailable, out of time, the client closing) gives each write
//   that status, as a separate request would have.
// A waiting write whose context ends completes with the context's error and is not sent. Two
// writes of one key never travel together: the later one waits for a later transaction.
// Thread-safe; callbacks run on whichever thread ends what they wait for (never under a lock).
class WriteBatcher {
 public:
  using Done = std::function<void(const absl::Status& status, etcdserverpb::ResponseOp& response)>;
  struct Write {
    Context ctx;       // the caller's: its deadline and cancellation
    std::string what;  // names the write in errors
    etcdserverpb::RequestOp op;
  };
  // Sends one write as a request of its own (a Put or DeleteRange with the write's context; it
  // may take `write.op`, which is not used again); runs `done` once with its result.
  using SendOne = std::function<void(Write& write, Done done)>;
  // Sends `request` (which stays valid until `done` ran) as one Txn on the client's context;
  // runs `done` once with its result.
  using SendTxn = std::function<void(
      std::string what, const etcdserverpb::TxnRequest& request,
      std::function<void(const absl::Status& status, etcdserverpb::TxnResponse& response)> done)>;
  struct Limits {
    size_t direct = 2;  // writes in flight before the next ones wait (>= 1)
    size_t max_ops = TxnLimits::kDefaultMaxOps;
    size_t max_bytes = TxnLimits::kDefaultMaxBytes;
    size_t op_overhead_bytes = TxnLimits::kOpOverheadBytes;
  };

  WriteBatcher(Limits limits, SendOne send_one, SendTxn send_txn);
  WriteBatcher(const WriteBatcher&) = delete;
  WriteBatcher& operator=(const WriteBatcher&) = delete;

  // Starts `write`; `done` runs once with its result. REQUIRES: `write.op` is a put or a delete
  // of one key (no range_end).
  void Submit(Write write, Done done);

  // How many writes went in transactions, and how many transactions carried them (for tests
  // and benchmarks).
  uint64_t batched_writes() const { return batched_writes_.load(std::memory_order_relaxed); }
  uint64_t transactions() const { return transactions_.load(std::memory_order_relaxed); }

 private:
  struct Pending;
  using PendingPtr = std::shared_ptr<Pending>;

  // Sends `batch` (one request for one write, else a transaction); counts as one in flight.
  void Dispatch(std::vector<PendingPtr> batch);
  // A request sent by Dispatch ended: the writes waiting go next.
  void Ended();
  // Takes the writes the next transaction carries from the front of waiting_.
  std::vector<PendingPtr> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What a transaction's end gives its writes.
  void Conclude(const std::vector<PendingPtr>& batch, const absl::Status& status,
                etcdserverpb::TxnRequest& request, etcdserverpb::TxnResponse& response);
  // Sends a write of a refused transaction again, alone (not counted in flight).
  void SendAlone(const PendingPtr& pending);

  const size_t direct_;
  const size_t op_overhead_bytes_;
  // Shrunk when etcd refuses a transaction for its size (never below one operation).
  TxnLimits txn_limits_;
  const SendOne send_one_;
  const SendTxn send_txn_;

  Mutex mu_;  // guards the two below
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Writes waiting for a request in flight to end, oldest first (some may have ended already:
  // skipped when taken). Not empty only while `direct_` are in flight.
  std::deque<PendingPtr> waiting_ ABSL_GUARDED_BY(mu_);

  std::atomic<uint64_t> batched_writes_ = 0;
  std::atomic<uint64_t> transactions_ = 0;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_WRITE_BATCHER_H_

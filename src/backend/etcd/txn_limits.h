// How large a transaction the etcd client sends: etcd's defaults until a server refuses one for
// its size, then half of what it refused.
#ifndef KVSTORE_BACKEND_ETCD_TXN_LIMITS_H_
#define KVSTORE_BACKEND_ETCD_TXN_LIMITS_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <optional>

#include "absl/status/status.h"
#include "backend/etcd/errors.h"

namespace kvstore::etcd {

// Thread-safe.
class TxnLimits {
 public:
  static constexpr size_t kDefaultMaxOps = 128;            // etcd's default --max-txn-ops
  static constexpr size_t kDefaultMaxBytes = 1024 * 1024;  // under its --max-request-bytes
  static constexpr size_t kOpOverheadBytes = 32;           // protobuf framing of one operation

  explicit TxnLimits(size_t max_ops = kDefaultMaxOps, size_t max_bytes = kDefaultMaxBytes)
      : max_ops_(std::max<size_t>(max_ops, 1)), max_bytes_(std::max<size_t>(max_bytes, 1)) {}

  size_t max_ops() const { return max_ops_.load(); }
  size_t max_bytes() const { return max_bytes_.load(); }

  // etcd refused a transaction of `ops` operations and `bytes` bytes with `refusal`: when it
  // exceeded --max-txn-ops (IsTooManyTxnOpsError) or --max-request-bytes
  // (IsRequestTooLargeError), that limit becomes half of what was refused. The new limit when it
  // shrank; nullopt otherwise.
  std::optional<size_t> Shrink(const absl::Status& refusal, size_t ops, size_t bytes) {
    const bool too_many = IsTooManyTxnOpsError(refusal);
    if (!too_many && !IsRequestTooLargeError(refusal)) return std::nullopt;
    std::atomic<size_t>& limit = too_many ? max_ops_ : max_bytes_;
    const size_t wanted = std::max<size_t>((too_many ? ops : bytes) / 2, 1);
    size_t current = limit.load();
    while (wanted < current && !limit.compare_exchange_weak(current, wanted)) {
    }
    if (wanted >= current) return std::nullopt;
    return wanted;
  }

 private:
  std::atomic<size_t> max_ops_;
  std::atomic<size_t> max_bytes_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_TXN_LIMITS_H_

// What etcd and gRPC answer, as the library's errors: the translation of a call's status into an
// absl::Status naming the operation, the endpoint and etcd's reason, and the checks that decide
// what to do about a failure (retry elsewhere, log in again, re-list, shrink a batch).
#ifndef KVSTORE_BACKEND_ETCD_ERRORS_H_
#define KVSTORE_BACKEND_ETCD_ERRORS_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "kvstore/context.h"

namespace kvstore::etcd {

// Debian's abseil has its own string_view type: these convert at the boundary.
inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// What a translation needs to know besides the status itself.
struct CallFacts {
  std::string_view what;         // the operation, e.g. "get 'a'"
  std::string_view peer;         // the endpoint the call went to
  const Context* ctx = nullptr;  // the caller's context (null: none)
  std::chrono::milliseconds request_timeout{0};
  bool closed = false;  // the client was shut down
};

// The library's status for a finished call: OK, or the gRPC code (Cancelled/DeadlineExceeded of
// the caller's context as that context's error; "request is too large" as ResourceExhausted; a
// call cancelled by Close as FailedPrecondition) with "etcd <what> at <peer>: <reason>".
absl::Status TranslateStatus(const grpc::Status& status, const CallFacts& facts);

// The peer a call went to, without gRPC's "ipv4:", "ipv6:" or "dns:///" prefix; empty when
// unknown.
std::string PeerOf(const grpc::ClientContext& context);

// True when gRPC had no connection to send the request on, so it was not sent: safe to retry on
// another endpoint, even for a write.
bool IsNotConnectedError(const grpc::Status& status);
// True when the endpoint itself failed (unreachable, no answer in time, no leader): the next call
// should prefer another endpoint. Answers of a working member (not found, compacted, ...) are not.
bool IsEndpointFailure(const absl::Status& status);
// True for errors after which a fresh authentication token should be tried.
bool IsAuthTokenError(const absl::Status& status);
// True when etcd refused a request because its users or roles changed while it was on its way
// ("revision of auth store is old"): checked before anything is applied, so the request may be
// sent again, with a token or not (a client certificate's user, --client-cert-auth).
bool IsAuthRevisionError(const absl::Status& status);
// True when etcd answered that a requested revision is compacted.
bool IsCompactedError(const absl::Status& status);
// True when etcd answered that a lease does not exist (expired or revoked).
bool IsLeaseNotFoundError(const absl::Status& status);
// True when etcd refused a transaction for holding more operations than its --max-txn-ops.
bool IsTooManyTxnOpsError(const absl::Status& status);
// True when etcd refused a request for exceeding its --max-request-bytes.
bool IsRequestTooLargeError(const absl::Status& status);

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_ERRORS_H_

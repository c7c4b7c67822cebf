#include "backend/etcd/errors.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace kvstore::etcd {

absl::Status TranslateStatus(const grpc::Status& status, const CallFacts& facts) {
  if (status.ok()) return absl::OkStatus();
  auto code = static_cast<absl::StatusCode>(status.error_code());
  if (facts.ctx != nullptr && facts.ctx->Done() &&
      (code == absl::StatusCode::kCancelled || code == absl::StatusCode::kDeadlineExceeded)) {
    absl::Status err = facts.ctx->Err();
    return absl::Status(err.code(), absl::StrCat("etcd ", ToAbsl(facts.what), ": ", err.message()));
  }
  std::string message = status.error_message();
  if (absl::StrContains(message, "request is too large")) {
    code = absl::StatusCode::kResourceExhausted;
  }
  if (code == absl::StatusCode::kDeadlineExceeded) {
    message = absl::StrCat("no answer within the request timeout of ",
                           facts.request_timeout.count(), " ms (", message, ")");
  }
  if (code == absl::StatusCode::kCancelled && facts.closed) {
    code = absl::StatusCode::kFailedPrecondition;
    message = "etcd backend is closed";
  }
  return absl::Status(
      code, absl::StrCat("etcd ", ToAbsl(facts.what), " at ", ToAbsl(facts.peer), ": ", message));
}

std::string PeerOf(const grpc::ClientContext& context) {
  std::string peer = context.peer();
  absl::string_view view = peer;
  for (absl::string_view scheme : {"ipv4:", "ipv6:", "dns:///"}) {
    if (absl::ConsumePrefix(&view, scheme)) break;
  }
  return std::string(view);
}

bool IsNotConnectedError(const grpc::Status& status) {
  // What gRPC answers when no connection could be picked: the request never left.
  return status.error_code() == grpc::StatusCode::UNAVAILABLE &&
         !absl::StrContains(status.error_message(), "etcdserver:") &&
         (absl::StrContains(status.error_message(), "failed to connect to all addresses") ||
          absl::StrContains(status.error_message(), "connections to all backends failing") ||
          absl::StrContains(status.error_message(), "no children to pick from") ||
          absl::StrContains(status.error_message(), "empty address list") ||
          absl::StrContains(status.error_message(), "DNS resolution failed"));
}

bool IsEndpointFailure(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

bool IsAuthTokenError(const absl::Status& status) {
  if (status.ok()) return false;
  absl::string_view msg = status.message();
  return status.code() == absl::StatusCode::kUnauthenticated ||
         absl::StrContains(msg, "invalid auth token") ||
         absl::StrContains(msg, "revision of auth store is old") ||
         absl::StrContains(msg, "user name is empty");
}

bool IsAuthRevisionError(const absl::Status& status) {
  return !status.ok() && absl::StrContains(status.message(), "revision of auth store is old");
}

bool IsCompactedError(const absl::Status& status) {
  return !status.ok() &&
         absl::StrContains(status.message(), "required revision has been compacted");
}

bool IsLeaseNotFoundError(const absl::Status& status) {
  return !status.ok() && absl::StrContains(status.message(), "requested lease not found");
}

bool IsTooManyTxnOpsError(const absl::Status& status) {
  return !status.ok() && absl::StrContains(status.message(), "too many operations in txn request");
}

bool IsRequestTooLargeError(const absl::Status& status) {
  return !status.ok() && absl::StrContains(status.message(), "request is too large");
}

}  // namespace kvstore::etcd

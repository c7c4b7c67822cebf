// Endpoint parsing and the classification of etcd's and gRPC's answers (no server needed).
#include <gtest/gtest.h>

#include "backend/etcd/endpoint.h"
#include "backend/etcd/errors.h"

namespace kvstore::etcd {
namespace {

TEST(EndpointTest, SchemeDecidesTlsAsEtcdsClientDoes) {
  absl::StatusOr<Endpoint> https = ParseEndpoint("https://etcd-0.example:2379/");
  ASSERT_TRUE(https.ok()) << https.status();
  EXPECT_TRUE(https->UsesTls(false));
  EXPECT_EQ(https->ChannelTarget(), "dns:///etcd-0.example:2379");
  absl::StatusOr<Endpoint> http = ParseEndpoint("http://10.0.0.1:2379");
  ASSERT_TRUE(http.ok());
  EXPECT_FALSE(http->UsesTls(true));
  EXPECT_EQ(http->ChannelTarget(), "ipv4:10.0.0.1:2379");
  absl::StatusOr<Endpoint> bare = ParseEndpoint("[::1]");
  ASSERT_TRUE(bare.ok());
  EXPECT_TRUE(bare->UsesTls(true));
  EXPECT_FALSE(bare->UsesTls(false));
  EXPECT_EQ(bare->port, 2379);
  EXPECT_EQ(bare->ChannelTarget(), "ipv6:[::1]:2379");
}

TEST(EndpointTest, BadEndpointsNameTheText) {
  for (const char* text :
       {"", "https://", "unix:///x", "[::1", "[::1]x", "h:0", "h:65536", "h:2a", "a b:1", ":1"}) {
    absl::StatusOr<Endpoint> e = ParseEndpoint(text);
    ASSERT_FALSE(e.ok()) << text;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find(std::string("'") + text + "'"), absl::string_view::npos)
        << e.status();
  }
}

TEST(ErrorsTest, EtcdsRefusalsAreRecognised) {
  absl::Status too_many(absl::StatusCode::kInvalidArgument,
                        "etcd batch at 127.0.0.1:2379: etcdserver: too many operations in txn "
                        "request");
  EXPECT_TRUE(IsTooManyTxnOpsError(too_many));
  EXPECT_FALSE(IsRequestTooLargeError(too_many));
  absl::Status too_large(absl::StatusCode::kResourceExhausted,
                         "etcd batch at 127.0.0.1:2379: etcdserver: request is too large");
  EXPECT_TRUE(IsRequestTooLargeError(too_large));
  EXPECT_FALSE(IsTooManyTxnOpsError(absl::OkStatus()));
  EXPECT_TRUE(IsEndpointFailure(absl::UnavailableError("connection refused")));
  EXPECT_TRUE(IsEndpointFailure(absl::DeadlineExceededError("no answer")));
  EXPECT_FALSE(IsEndpointFailure(absl::NotFoundError("etcdserver: requested lease not found")));
}

TEST(ErrorsTest, TranslationNamesOperationPeerAndReason) {
  Context ctx;
  absl::Status s =
      TranslateStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"),
                      CallFacts{.what = "get 'a'",
                                .peer = "10.0.0.1:2379",
                                .ctx = &ctx,
                                .request_timeout = std::chrono::milliseconds(1500)});
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(s.message(),
            "etcd get 'a' at 10.0.0.1:2379: no answer within the request timeout of 1500 ms "
            "(Deadline Exceeded)");
  absl::Status closed = TranslateStatus(grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled"),
                                        CallFacts{.what = "watch", .peer = "p", .closed = true});
  EXPECT_EQ(closed.code(), absl::StatusCode::kFailedPrecondition);
  auto [done, cancel] = WithCancel(Context());
  cancel();
  absl::Status mine = TranslateStatus(grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled"),
                                      CallFacts{.what = "put 'b'", .peer = "p", .ctx = &done});
  EXPECT_EQ(mine.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(mine.message().find(" at p"), absl::string_view::npos)
      << "the caller's own cancellation is not the endpoint's fault: " << mine;
}

TEST(ErrorsTest, OnlyUnsentRequestsAreNotConnected) {
  EXPECT_TRUE(IsNotConnectedError(grpc::Status(
      grpc::StatusCode::UNAVAILABLE, "failed to connect to all addresses; last error: refused")));
  EXPECT_FALSE(IsNotConnectedError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed")));
  EXPECT_FALSE(IsNotConnectedError(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader (failed to connect)")));
}

}  // namespace
}  // namespace kvstore::etcd

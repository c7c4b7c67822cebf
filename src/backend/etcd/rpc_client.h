// The etcd calls the backend makes, over one channel per endpoint (ChannelPool): blocking unary
// calls with deadlines, logging in, and fail-over to another endpoint when the request could not
// be sent; asynchronous ranges and bidirectional streams for the watchers and leases (Transport).
#ifndef KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_
#define KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backend/etcd/bidi_stream.h"
#include "backend/etcd/call_registry.h"
#include "backend/etcd/channel_pool.h"
#include "backend/etcd/transport.h"
#include "kvstore/context.h"
#include "kvstore/etcd/etcd_backend.h"
#include "rpc.grpc.pb.h"

namespace kvstore::etcd {

using WatchStream = BidiStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;
using KeepAliveStream =
    BidiStream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>;

class RpcClient final : public Transport {
 public:
  // Validates the configuration (endpoints, TLS files, credentials, timeouts) and creates the
  // channels; does not connect.
  static absl::StatusOr<std::unique_ptr<RpcClient>> Create(const EtcdConfig& config);
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;
  ~RpcClient() override;  // Shutdown()

  // Blocking calls: deadline min(ctx, request_timeout), cancelled promptly when `ctx` is done,
  // logged in again once when the token is refused. A request that could not be sent (no
  // connection) goes to the next endpoint, and after every endpoint was tried, again after a
  // pause, until the deadline; one that may have been sent is never repeated. `what` names the
  // operation in errors.
  absl::Status Range(const Context& ctx, std::string_view what,
                     const etcdserverpb::RangeRequest& request,
                     etcdserverpb::RangeResponse* response);
  absl::Status Put(const Context& ctx, std::string_view what,
                   const etcdserverpb::PutRequest& request, etcdserverpb::PutResponse* response);
  absl::Status DeleteRange(const Context& ctx, std::string_view what,
                           const etcdserverpb::DeleteRangeRequest& request,
                           etcdserverpb::DeleteRangeResponse* response);
  absl::Status Txn(const Context& ctx, std::string_view what,
                   const etcdserverpb::TxnRequest& request, etcdserverpb::TxnResponse* response);

  // Transport.
  absl::Status LeaseGrant(const Context& ctx, const etcdserverpb::LeaseGrantRequest& request,
                          etcdserverpb::LeaseGrantResponse* response) override;
  absl::Status LeaseRevoke(const Context& ctx, const etcdserverpb::LeaseRevokeRequest& request,
                           etcdserverpb::LeaseRevokeResponse* response) override;
  void AsyncRange(std::string what, const etcdserverpb::RangeRequest& request,
                  Callback<etcdserverpb::RangeResponse> done) override;
  absl::StatusOr<std::shared_ptr<WatchRequests>> StartWatchStream(
      ReadHandler<etcdserverpb::WatchResponse> on_read, DoneHandler on_done) override;
  absl::StatusOr<std::shared_ptr<KeepAliveRequests>> StartKeepAliveStream(
      ReadHandler<etcdserverpb::LeaseKeepAliveResponse> on_read, DoneHandler on_done) override;
  void ForgetTokens() override;

  // Maintenance.Status of every endpoint; waits at most `timeout`.
  struct EndpointStatus {
    std::string endpoint;
    absl::Status status;
    etcdserverpb::StatusResponse response;
  };
  std::vector<EndpointStatus> StatusOfEndpoints(std::chrono::milliseconds timeout);

  // Cancels every call and stream in flight and waits until their callbacks have returned. Later
  // calls fail with FailedPrecondition. Idempotent.
  void Shutdown();

  const std::string& EndpointList() const { return pool_->AddressList(); }
  std::chrono::milliseconds request_timeout() const { return request_timeout_; }

 private:
  using Member = ChannelPool::Member;
  // Starts one unary call on `member`'s stubs; `done` runs on a gRPC thread.
  using Starter = std::function<void(Member& member, grpc::ClientContext* context,
                                     std::function<void(grpc::Status)> done)>;
  // The outcome of one attempt on one endpoint.
  struct Attempt {
    absl::Status status;
    bool not_connected = false;  // the request was not sent
  };

  RpcClient(std::unique_ptr<ChannelPool> pool, const EtcdConfig& config);

  // Until when a pick waits for some endpoint to connect (see ChannelPool::Pick), from now.
  std::chrono::steady_clock::time_point ConnectWaitEnd() const;
  absl::Status BlockingCall(const Context& ctx, std::string_view what, bool with_token,
                            const Starter& start);
  // One call on member `index`, blocking until it completed.
  Attempt CallOnce(size_t index, const Context& ctx, std::string_view what,
                   const std::string& token, std::chrono::steady_clock::time_point deadline,
                   const Starter& start);
  // The token to send to member `index`, logging in there first if needed.
  absl::StatusOr<std::string> TokenFor(size_t index, const Context& ctx,
                                       std::chrono::steady_clock::time_point deadline,
                                       bool* not_connected);
  // Sets the deadline (the earlier of `deadline` and the context's) and the token metadata.
  void PrepareContext(grpc::ClientContext* context, const Context& ctx, const std::string& token,
                      std::chrono::steady_clock::time_point deadline) const;
  // The library's status for a call on member `index` that finished with `status`, after
  // learning from it: a refused token is forgotten, a failed endpoint avoided for a while.
  absl::Status Conclude(size_t index, const grpc::Status& status, std::string_view what,
                        const grpc::ClientContext& context, const Context* ctx);
  // Opens a stream on the endpoint Pick chooses; `bind` attaches it to that member's stub.
  template <typename Stream>
  absl::StatusOr<std::shared_ptr<Stream>> StartStream(
      std::string what, typename Stream::ReadHandler on_read, typename Stream::DoneHandler on_done,
      const std::function<void(Member& member, grpc::ClientContext* context, Stream* stream)>&
          bind);

  const std::unique_ptr<ChannelPool> pool_;
  const std::string username_, password_;
  const std::chrono::milliseconds request_timeout_;
  // How long a pick waits for a connection before the call goes to a member still connecting:
  // a working member connects in a round trip or two, while a failing one (wrong CA, refused)
  // may flap between connecting and failed, which only a call's own failure tells. Short, as the
  // backend's few threads start asynchronous calls and streams.
  const std::chrono::milliseconds connect_wait_;
  CallRegistry registry_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_

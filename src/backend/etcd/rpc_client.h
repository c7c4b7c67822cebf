// The etcd calls the backend makes, over one channel per endpoint (ChannelPool): blocking unary
// calls with deadlines, logging in, and fail-over to another endpoint when the request could not
// be sent; the same as asynchronous calls (UpdateAsync and the like); asynchronous ranges and
// bidirectional streams for the watchers and leases (Transport).
#ifndef KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_
#define KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backend/etcd/bidi_stream.h"
#include "backend/etcd/call_registry.h"
#include "backend/etcd/channel_pool.h"
#include "backend/etcd/completion_poller.h"
#include "backend/etcd/executor.h"
#include "backend/etcd/request_limits.h"
#include "backend/etcd/transport.h"
#include "kvstore/context.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/mutex.h"
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

  // Asynchronous unary calls, with the blocking calls' semantics (deadline, cancellation, login,
  // fail-over); `done` runs once, with the response. The common case (an endpoint to pick and its
  // token held) starts on the caller's thread without blocking, and `done` runs on the poller's
  // thread (CompletionPoller).
  // The rest (a login, a retry on another endpoint or after a pause) runs as the blocking call on
  // a thread of `slow`; a call `slow` drops unfinished (shut down) completes with
  // FailedPrecondition. `done` must not block, nor shut this client down.
  void PutAsync(Executor& slow, const Context& ctx, std::string what,
                etcdserverpb::PutRequest request, Callback<etcdserverpb::PutResponse> done);
  void DeleteRangeAsync(Executor& slow, const Context& ctx, std::string what,
                        etcdserverpb::DeleteRangeRequest request,
                        Callback<etcdserverpb::DeleteRangeResponse> done);
  void RangeAsync(Executor& slow, const Context& ctx, std::string what,
                  etcdserverpb::RangeRequest request, Callback<etcdserverpb::RangeResponse> done);

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
  // calls fail with FailedPrecondition. Idempotent. REQUIRES: not called from a completion.
  void Shutdown();

  const std::string& EndpointList() const { return pool_->AddressList(); }
  std::chrono::milliseconds request_timeout() const { return request_timeout_; }

 private:
  using Member = ChannelPool::Member;
  using Connection = ChannelPool::Connection;
  // Starts one unary call on `connection`'s stubs; `done` runs on the poller's thread.
  using Starter = std::function<void(Connection& connection, grpc::ClientContext* context,
                                     std::function<void(grpc::Status)> done)>;
  // Runs `start` on `connection` and waits for its completion.
  static grpc::Status AwaitCompletion(const Starter& start, Connection& connection,
                                      grpc::ClientContext* context);
  // The outcome of one attempt on one endpoint.
  struct Attempt {
    absl::Status status;
    bool not_connected = false;  // the request was not sent
  };

  // One asynchronous unary call (defined in rpc_client.cc).
  struct UnaryCall;
  RpcClient(std::unique_ptr<ChannelPool> pool, const EtcdConfig& config,
            const RequestLimits& limits);
  // BlockingCall with a token, once one of the max_inflight slots is free.
  absl::Status AdmittedCall(const Context& ctx, std::string_view what, const Starter& start);

  // The asynchronous calls' common part: `start` sends the typed request.
  template <typename Request, typename Response, typename Rpc>
  void StartUnary(Executor& slow, const Context& ctx, std::string what, Request request,
                  Callback<Response> done, Rpc rpc);
  // The process's completion queue, taking the poller at the first call; null once shut down.
  grpc::CompletionQueue* Queue();
  // Starts the call `prepare` makes on Queue(); `done` runs on the poller's thread.
  template <typename Response, typename Prepare>
  void SendOnQueue(const Prepare& prepare, Response* response,
                   std::function<void(grpc::Status)> done);
  // Sends `call` on an endpoint at once if it can without blocking, else hands it to RunBlocking.
  void Launch(Executor& slow, std::shared_ptr<UnaryCall> call);
  // Completes `call`'s attempt (on the poller's thread): reports, or retries through RunBlocking.
  void OnAttemptDone(Executor& slow, std::shared_ptr<UnaryCall> call, const grpc::Status& status);
  // Runs the rest of `call` as a blocking call on `slow`.
  void RunBlocking(Executor& slow, std::shared_ptr<UnaryCall> call);

  // Until when a pick waits for some endpoint to connect (see ChannelPool::Pick), from now.
  std::chrono::steady_clock::time_point ConnectWaitEnd() const;
  // A unary call until `deadline` (by default the request timeout from now).
  absl::Status BlockingCall(const Context& caller_ctx, std::string_view what, bool with_token,
                            const Starter& start,
                            std::optional<std::chrono::steady_clock::time_point> deadline = {});
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
  // Opens a stream on the endpoint Pick chooses (its index in `picked`); `bind` attaches it to
  // that member's stub.
  template <typename Stream>
  absl::StatusOr<std::shared_ptr<Stream>> StartStream(
      std::string what, typename Stream::ReadHandler on_read, typename Stream::DoneHandler on_done,
      const std::function<std::unique_ptr<typename Stream::ReaderWriter>(
          Connection& connection, grpc::ClientContext* context, grpc::CompletionQueue* queue)>&
          bind,
      size_t* picked);

  const std::unique_ptr<ChannelPool> pool_;
  const std::string username_, password_;
  const std::chrono::milliseconds request_timeout_;
  // How long a pick waits for a connection before the call goes to a member still connecting:
  // a working member connects in a round trip or two, while a failing one (wrong CA, refused)
  // may flap between connecting and failed, which only a call's own failure tells. Short, as the
  // backend's few threads start asynchronous calls and streams.
  const std::chrono::milliseconds connect_wait_;
  CallRegistry registry_;
  // Requests in flight (EtcdConfig::max_inflight): the blocking and asynchronous unary calls,
  // from their first attempt until their result (the watchers' list pages, which a watcher asks
  // for one at a time, and logins are not counted).
  InflightGate inflight_;
  // Done once Shutdown began: every wait of a call (a connection, a login, a retry) ends then.
  Context closing_;
  CancelFunc close_;
  // Every call and stream completes on the process's completion queue (see CompletionPoller),
  // taken at the first one and let go once every call completed.
  Mutex poller_mu_;  // guards the two below
  std::shared_ptr<CompletionPoller> poller_ ABSL_GUARDED_BY(poller_mu_);
  bool poller_released_ ABSL_GUARDED_BY(poller_mu_) = false;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_

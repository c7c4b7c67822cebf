// The etcd calls the backend makes, over one channel per endpoint (ChannelPool): unary calls with
// deadlines, logging in, and fail-over to another endpoint when the request could not be sent,
// all on one asynchronous path (the blocking calls wait for it); bidirectional streams for the
// watchers and leases (Transport).
#ifndef KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_
#define KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <set>
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
#include "backend/etcd/write_batcher.h"
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
  // operation in errors. Each is the asynchronous call below and a wait for its result: never
  // from the poller's thread (FailedPrecondition there).
  absl::Status Range(const Context& ctx, std::string_view what,
                     const etcdserverpb::RangeRequest& request,
                     etcdserverpb::RangeResponse* response);
  // Puts and deletes of one key go through the WriteBatcher: while enough writes are in flight,
  // they wait for one to end and go on together in one transaction (see WriteBatcher).
  absl::Status Put(const Context& ctx, std::string_view what, etcdserverpb::PutRequest request,
                   etcdserverpb::PutResponse* response);
  absl::Status DeleteRange(const Context& ctx, std::string_view what,
                           etcdserverpb::DeleteRangeRequest request,
                           etcdserverpb::DeleteRangeResponse* response);
  absl::Status Txn(const Context& ctx, std::string_view what,
                   const etcdserverpb::TxnRequest& request, etcdserverpb::TxnResponse* response);

  // Asynchronous unary calls, with the blocking calls' semantics (deadline, cancellation, login,
  // fail-over): the one way this client calls etcd. They never block: a login, a wait for a
  // connection or a pause before the next round suspends the call, and an alarm on the queue
  // resumes it. `done` runs once, with the response: on the poller's thread (CompletionPoller),
  // or on the calling thread (or the one that freed a max_inflight slot) when the call ends
  // before anything was sent; a call unfinished at Shutdown completes with FailedPrecondition.
  // `done` must not block, nor shut this client down.
  void PutAsync(const Context& ctx, std::string what, etcdserverpb::PutRequest request,
                Callback<etcdserverpb::PutResponse> done);
  void DeleteRangeAsync(const Context& ctx, std::string what,
                        etcdserverpb::DeleteRangeRequest request,
                        Callback<etcdserverpb::DeleteRangeResponse> done);
  void RangeAsync(const Context& ctx, std::string what, etcdserverpb::RangeRequest request,
                  Callback<etcdserverpb::RangeResponse> done);

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
  // One unary call, from its first attempt to its result (defined in rpc_client.cc).
  struct UnaryCall;
  using CallPtr = std::shared_ptr<UnaryCall>;
  // Which token a call sends.
  enum class TokenUse {
    kNone,    // none (a login)
    kIfHeld,  // the one held, without logging in for it (a status)
    kLogIn,   // the one held, else one logged in for: every other call
  };
  struct CallOptions {
    Context ctx;       // the caller's
    std::string what;  // names the operation in errors
    std::chrono::steady_clock::time_point deadline;
    TokenUse token = TokenUse::kLogIn;
    bool admitted = true;  // counted against max_inflight
    // Its first attempt waits for the connection (gRPC's wait_for_ready), up to the deadline.
    bool wait_for_connection = false;
    std::optional<size_t> member;  // only this member, one attempt (logins, status)
  };
  // The outcome of a call: its status, and whether the request was never sent (not connected).
  struct Outcome {
    Outcome(absl::Status status, bool not_sent = false)  // NOLINT: implicit, see Completion
        : status(std::move(status)), not_sent(not_sent) {}
    absl::Status status;
    bool not_sent = false;
  };

  RpcClient(std::unique_ptr<ChannelPool> pool, const EtcdConfig& config,
            const RequestLimits& limits);

  // Starts a call: now, or once one of the max_inflight slots is free (admitted calls). `start`
  // sends the request on a member; `done` runs once with the outcome.
  CallPtr Call(CallOptions options, Starter start, std::function<void(Outcome)> done);
  // A call and a wait for its outcome, on the caller's thread: the blocking calls.
  absl::Status CallAndWait(const Context& ctx, std::string_view what, Starter start);
  // A write through the batcher, and a wait for its result on the caller's thread.
  absl::Status WriteAndWait(const Context& ctx, std::string_view what, etcdserverpb::RequestOp op,
                            etcdserverpb::ResponseOp* response);
  // The batcher's requests: one write alone, or a transaction of several.
  void SendWrite(WriteBatcher::Write& write, WriteBatcher::Done done);
  void SendWriteTxn(std::string what, const etcdserverpb::TxnRequest& request,
                    std::function<void(const absl::Status&, etcdserverpb::TxnResponse&)> done);
  // Whether a delete is of one key (which the batcher may carry).
  static bool OfOneKey(const etcdserverpb::DeleteRangeRequest& request);
  // The asynchronous calls' common part: `rpc` prepares the typed request on a connection.
  template <typename Request, typename Response, typename Rpc>
  void StartUnary(const Context& ctx, std::string what, Request request, Callback<Response> done,
                  Rpc rpc);

  // The call's next move: finish, wait for a connection or the next round, log in, or send.
  void Step(const CallPtr& call);
  // Sends `call`'s request on member `index` with `token`.
  void Send(const CallPtr& call, size_t index, const std::string& token);
  // Concludes an attempt (on the poller's thread): finishes the call, or takes the next step.
  void OnAttemptDone(CallPtr call, const grpc::Status& status);
  // Gets member `index`'s token for `call`, logging in if none is held; the call waits.
  void AwaitToken(const CallPtr& call, size_t index);
  // Starts a login on member `index`, until `deadline`; waits for the connection (see
  // CallOptions) if `wait_for_connection`.
  void LogIn(size_t index, std::chrono::steady_clock::time_point deadline, bool wait_for_connection,
             AuthToken::Done done);
  // Suspends `call` until Resume(call, number) with the number returned, or until the call's
  // context or this client is done (which resume it too).
  uint64_t Suspend(const CallPtr& call);
  // Ends wait `number` of `call` if it is still the one under way, running `record` (what ended
  // it) first; false when it ended already.
  bool EndWait(const CallPtr& call, uint64_t number,
               const std::function<void(UnaryCall&)>& record = nullptr);
  // EndWait, then the next step on the poller's thread.
  void Resume(const CallPtr& call, uint64_t number,
              const std::function<void(UnaryCall&)>& record = nullptr);
  // Suspends `call` for `delay`.
  void StepAfter(const CallPtr& call, std::chrono::steady_clock::duration delay);
  // Runs Step(call) on the poller's thread once `delay` passed (at once: zero), if `wait` (not
  // zero) is still under way then. Steps never run on a pool where calls block and wait for
  // them: the poller's thread never blocks. At once, on this thread, once Shutdown began.
  class StepAlarm;
  void StepOnPoller(const CallPtr& call, std::chrono::steady_clock::duration delay, uint64_t wait);

  // A call out of time while no member could take it: `reason` is the last member's.
  absl::Status NoConnectionInTime(const absl::Status& reason) const;
  // FailedPrecondition on the poller's thread, where a wait would wait for itself.
  static absl::Status CheckMayWait(std::string_view what);
  // The process's completion queue, taking the poller at the first call; null once shut down.
  grpc::CompletionQueue* Queue();
  // Starts the call `prepare` makes on Queue(); `done` runs on the poller's thread.
  template <typename Response, typename Prepare>
  void SendOnQueue(const Prepare& prepare, Response* response,
                   std::function<void(grpc::Status)> done);

  // Until when a pick waits for some endpoint to connect (see ChannelPool::Pick), from now.
  std::chrono::steady_clock::time_point ConnectWaitEnd() const;
  // The token to send to member `index` (a login first if needed), waiting for it: for streams.
  absl::StatusOr<std::string> TokenFor(size_t index);
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
  // Puts and deletes of one key: those that queue behind writes in flight travel together.
  WriteBatcher batcher_;
  // Done once Shutdown began: every wait of a call (a connection, a login, a retry) ends then.
  Context closing_;
  CancelFunc close_;
  // Every call and stream completes on the process's completion queue (see CompletionPoller),
  // taken at the first one and let go once every call completed.
  Mutex poller_mu_;  // guards the two below
  std::shared_ptr<CompletionPoller> poller_ ABSL_GUARDED_BY(poller_mu_);
  bool poller_released_ ABSL_GUARDED_BY(poller_mu_) = false;
  // The calls' steps after a wait (a timer, a login, the context done), as alarms on the queue:
  // a client owns no thread. Shutdown cancels them and waits until each came back.
  Mutex alarms_mu_;  // guards the two below
  CondVar alarms_cv_;
  std::set<StepAlarm*> alarms_ ABSL_GUARDED_BY(alarms_mu_);
  bool alarms_closed_ ABSL_GUARDED_BY(alarms_mu_) = false;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_

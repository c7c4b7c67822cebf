// The gRPC side of the etcd backend: one channel to the configured endpoints (round-robin
// fail-over, TLS, keep-alive pings), authentication tokens, deadlines, error translation, and the
// asynchronous unary calls and bidirectional streams everything else is built on.
#ifndef KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_
#define KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/context.h"
#include "kvstore/etcd/etcd_backend.h"
#include "rpc.grpc.pb.h"

namespace kvstore::etcd {

// Debian's abseil has its own string_view type: these convert at the boundary.
inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// One configured endpoint, split into its parts.
struct Endpoint {
  std::string host;  // without brackets for IPv6
  int port = 0;
  bool tls = false;             // "https://" given
  std::string Address() const;  // host:port, IPv6 in brackets
};

// Parses "host:port", "http://host:port" or "https://host:port" (a trailing "/" is allowed).
absl::StatusOr<Endpoint> ParseEndpoint(std::string_view text);

// True for errors after which a fresh authentication token should be tried.
bool IsAuthTokenError(const absl::Status& status);
// True when gRPC had no connection to send the request on (so it was not sent).
bool IsNotConnectedError(const grpc::Status& status);
// True when etcd answered that a requested revision is compacted.
bool IsCompactedError(const absl::Status& status);
// True when etcd answered that a lease does not exist (expired or revoked).
bool IsLeaseNotFoundError(const absl::Status& status);

// Spreads requests so that at most `qps` start per second (0: unlimited).
class QpsLimiter {
 public:
  explicit QpsLimiter(double qps) : qps_(qps) {}
  // Waits for this request's slot; the context's error when it is done first.
  absl::Status Wait(const Context& ctx);

 private:
  const double qps_;
  std::mutex mu_;  // guards next_
  std::chrono::steady_clock::time_point next_{};
};

class RpcClient;

// A bidirectional stream (Watch, LeaseKeepAlive) driven by gRPC's callback API: reads and writes
// complete on gRPC threads, so the handlers must not block. Write and Cancel may be called from
// any thread, also after the stream ended (then they do nothing).
template <typename Req, typename Resp>
class BidiStream : public grpc::ClientBidiReactor<Req, Resp> {
 public:
  using ReadHandler = std::function<void(Resp& response)>;
  // Called once when the stream ended, with the reason (already translated).
  using DoneHandler = std::function<void(const absl::Status& status)>;

  void Write(Req request);
  void Cancel();

 private:
  friend class RpcClient;
  BidiStream(RpcClient* client, std::string what, ReadHandler on_read, DoneHandler on_done)
      : client_(client),
        what_(std::move(what)),
        on_read_(std::move(on_read)),
        on_done_(std::move(on_done)) {}

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;
  void StartNextWriteLocked(std::unique_lock<std::mutex>& lock);

  RpcClient* const client_;
  const std::string what_;
  ReadHandler on_read_;
  DoneHandler on_done_;
  // Destroyed in OnDone, not with the stream: it holds a reference to the channel (see
  // RpcClient::Release). context_mu_ guards the pointer, not the context.
  std::mutex context_mu_;
  std::unique_ptr<grpc::ClientContext> context_ = std::make_unique<grpc::ClientContext>();
  Resp response_;
  std::shared_ptr<BidiStream> self_;  // keeps the reactor alive until OnDone

  std::mutex mu_;  // guards the write state below
  std::deque<Req> pending_writes_;
  Req current_write_;
  bool writing_ = false;
  bool reads_finished_ = false;  // no more writes are started once set
};

using WatchStream = BidiStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;
using KeepAliveStream =
    BidiStream<etcdserverpb::LeaseKeepAliveRequest, etcdserverpb::LeaseKeepAliveResponse>;

class RpcClient {
 public:
  // Validates the configuration (endpoints, TLS files) and creates the channel; does not connect.
  static absl::StatusOr<std::unique_ptr<RpcClient>> Create(const EtcdConfig& config);
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;
  ~RpcClient();  // Shutdown()

  template <typename Resp>
  using Callback = std::function<void(const absl::Status& status, Resp& response)>;

  // Blocking calls: deadline min(ctx, request_timeout), cancelled promptly when `ctx` is done,
  // re-authenticated once when the token is refused. `what` names the operation in errors.
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
  absl::Status LeaseGrant(const Context& ctx, const etcdserverpb::LeaseGrantRequest& request,
                          etcdserverpb::LeaseGrantResponse* response);
  absl::Status LeaseRevoke(const Context& ctx, const etcdserverpb::LeaseRevokeRequest& request,
                           etcdserverpb::LeaseRevokeResponse* response);

  // Asynchronous Range: `done` runs on a gRPC thread and must not block. May block briefly itself
  // to authenticate, so call it from a thread that may block (never a gRPC callback).
  void AsyncRange(std::string what, const etcdserverpb::RangeRequest& request,
                  Callback<etcdserverpb::RangeResponse> done);

  // Maintenance.Status of every endpoint, each on its own channel; waits at most `timeout`.
  struct EndpointStatus {
    std::string endpoint;
    absl::Status status;
    etcdserverpb::StatusResponse response;
  };
  std::vector<EndpointStatus> StatusOfEndpoints(std::chrono::milliseconds timeout);

  // Opens a stream (with the token and "require leader" metadata). Fails (without calling
  // `on_done`) when authentication fails or once shut down. May block briefly to authenticate,
  // like AsyncRange.
  absl::StatusOr<std::shared_ptr<WatchStream>> StartWatchStream(WatchStream::ReadHandler on_read,
                                                                WatchStream::DoneHandler on_done);
  absl::StatusOr<std::shared_ptr<KeepAliveStream>> StartKeepAliveStream(
      KeepAliveStream::ReadHandler on_read, KeepAliveStream::DoneHandler on_done);

  // Forgets `token` (when the server refused it) so that the next call authenticates again.
  void InvalidateToken();

  // Translates a gRPC status into the library's: the endpoint and etcd's reason in the message.
  absl::Status Translate(const grpc::Status& status, std::string_view what,
                         const grpc::ClientContext& context, const Context& ctx) const;

  // Cancels every call and stream in flight and waits until their callbacks have returned. Later
  // calls fail with Cancelled. Idempotent.
  void Shutdown();

  const std::string& EndpointList() const { return endpoint_list_; }
  std::chrono::milliseconds request_timeout() const { return request_timeout_; }

 private:
  template <typename Req, typename Resp>
  friend class BidiStream;
  using StartFn = std::function<void(grpc::ClientContext*, std::function<void(grpc::Status)>)>;

  RpcClient() = default;

  // The token to send (empty without auth), authenticating first if needed.
  absl::StatusOr<std::string> Token(const Context& ctx);
  // Sets the deadline (the earlier of `deadline` and the context's) and the token metadata.
  void PrepareContext(grpc::ClientContext* context, const Context& ctx, const std::string& token,
                      std::chrono::steady_clock::time_point deadline);
  // Runs one unary call started by `start`, blocking until it completed.
  absl::Status BlockingCall(
      const Context& ctx, std::string_view what, bool with_token,
      const std::function<void(grpc::ClientContext*, std::function<void(grpc::Status)>)>& start);
  // Register adds a call's context to those Shutdown cancels (false once shut down), Unregister
  // removes it once its callback ran. Release follows once that ClientContext is destroyed, as the
  // call's last use of the client: a ClientContext holds a reference to the channel, and dropping
  // the last one on a gRPC callback thread makes gRPC's callback completion queue shut itself down
  // from its own thread (it cannot join itself, frees the queue and the thread then uses it: a
  // double free). Shutdown waits for every Release, so ~RpcClient drops the last reference.
  bool Register(grpc::ClientContext* context);
  void Unregister(grpc::ClientContext* context);
  void Release();
  template <typename Stream, typename Starter>
  absl::StatusOr<std::shared_ptr<Stream>> StartStream(std::string what,
                                                      typename Stream::ReadHandler on_read,
                                                      typename Stream::DoneHandler on_done,
                                                      Starter start);

  std::string endpoint_list_;
  std::vector<std::string> endpoint_addresses_;
  std::string username_, password_;
  std::chrono::milliseconds request_timeout_{15000};
  std::shared_ptr<grpc::Channel> channel_;
  std::vector<std::unique_ptr<etcdserverpb::Maintenance::Stub>> endpoint_maintenance_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth_;

  std::mutex auth_mu_;  // guards the token state below
  std::condition_variable auth_cv_;
  std::string token_;
  bool authenticating_ = false;

  mutable std::mutex calls_mu_;  // guards the in-flight registry below
  std::condition_variable calls_cv_;
  std::set<grpc::ClientContext*> in_flight_;
  size_t live_contexts_ = 0;  // registered and not yet released
  bool shutdown_ = false;
};

// --- BidiStream implementation (a template, so in the header) ---

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::Write(Req request) {
  std::unique_lock<std::mutex> lock(mu_);
  if (reads_finished_) return;
  pending_writes_.push_back(std::move(request));
  if (!writing_) StartNextWriteLocked(lock);
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::Cancel() {
  std::lock_guard<std::mutex> guard(context_mu_);
  if (context_) context_->TryCancel();
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::StartNextWriteLocked(std::unique_lock<std::mutex>& lock) {
  current_write_ = std::move(pending_writes_.front());
  pending_writes_.pop_front();
  writing_ = true;
  // The hold taken at start keeps OnDone away until writing_ is false again, so starting the
  // write outside the lock is safe.
  lock.unlock();
  this->StartWrite(&current_write_);
  lock.lock();
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::OnWriteDone(bool ok) {
  std::unique_lock<std::mutex> lock(mu_);
  writing_ = false;
  if (!ok) pending_writes_.clear();  // the stream is broken; reads will report it
  if (reads_finished_) {
    pending_writes_.clear();
    lock.unlock();
    this->RemoveHold();
    return;
  }
  if (!pending_writes_.empty()) StartNextWriteLocked(lock);
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::OnReadDone(bool ok) {
  if (ok) {
    on_read_(response_);
    this->StartRead(&response_);
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  reads_finished_ = true;
  pending_writes_.clear();
  bool release = !writing_;
  lock.unlock();
  if (release) this->RemoveHold();
}

template <typename Req, typename Resp>
void BidiStream<Req, Resp>::OnDone(const grpc::Status& status) {
  absl::Status translated = client_->Translate(status, what_, *context_, Context());
  DoneHandler on_done = std::move(on_done_);
  on_read_ = nullptr;
  if (on_done) on_done(translated);
  on_done = nullptr;
  RpcClient* const client = client_;
  client->Unregister(context_.get());
  std::unique_ptr<grpc::ClientContext> context;
  {
    std::lock_guard<std::mutex> guard(context_mu_);
    context = std::move(context_);
  }
  context.reset();
  std::shared_ptr<BidiStream> self = std::move(self_);
  client->Release();
  // `self` may be the last reference: the reactor is destroyed here, its last use by gRPC. It no
  // longer holds anything of the client's.
}

template <typename Stream, typename Starter>
absl::StatusOr<std::shared_ptr<Stream>> RpcClient::StartStream(std::string what,
                                                               typename Stream::ReadHandler on_read,
                                                               typename Stream::DoneHandler on_done,
                                                               Starter start) {
  absl::StatusOr<std::string> token = Token(Context());
  if (!token.ok()) return token.status();
  std::shared_ptr<Stream> stream(
      new Stream(this, std::move(what), std::move(on_read), std::move(on_done)));
  grpc::ClientContext* context = stream->context_.get();
  context->set_wait_for_ready(true);
  // Makes a member without a leader end the stream instead of keeping it silently.
  context->AddMetadata("hasleader", "true");
  if (!token->empty()) context->AddMetadata("token", *token);
  if (!Register(context)) return absl::FailedPreconditionError("etcd backend is closed");
  stream->self_ = stream;
  start(context, stream.get());
  stream->AddHold();
  stream->StartRead(&stream->response_);
  stream->StartCall();
  return stream;
}

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_RPC_CLIENT_H_

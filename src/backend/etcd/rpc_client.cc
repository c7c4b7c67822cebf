#include "backend/etcd/rpc_client.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backend/etcd/channel_factory.h"
#include "backend/etcd/errors.h"
#include "backend/etcd/request_limits.h"
#include "core/backoff.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {
namespace {

// The pauses of a blocking call between rounds over endpoints that could not take it.
constexpr std::chrono::milliseconds kNotConnectedRetryBase(50);
constexpr std::chrono::milliseconds kNotConnectedRetryMax(1000);

}  // namespace

absl::StatusOr<std::unique_ptr<RpcClient>> RpcClient::Create(const EtcdConfig& config) {
  if (config.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd config: no endpoints given");
  }
  std::vector<Endpoint> endpoints;
  for (const std::string& text : config.endpoints) {
    absl::StatusOr<Endpoint> endpoint = ParseEndpoint(text);
    if (!endpoint.ok()) return endpoint.status();
    endpoints.push_back(*std::move(endpoint));
  }
  if (config.username.empty() && !config.password.empty()) {
    return absl::InvalidArgumentError("etcd config: password given without username");
  }
  absl::StatusOr<RequestLimits> limits = EffectiveRequestLimits(config);
  if (!limits.ok()) return limits.status();
  if (config.request_timeout <= std::chrono::milliseconds::zero() ||
      config.dial_timeout <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("etcd config: timeouts must be positive");
  }
  absl::StatusOr<std::unique_ptr<ChannelFactory>> factory =
      ChannelFactory::Create(config, endpoints);
  if (!factory.ok()) return factory.status();
  return std::unique_ptr<RpcClient>(new RpcClient(
      std::make_unique<ChannelPool>(*std::move(factory), endpoints, !config.username.empty()),
      config, *limits));
}

RpcClient::RpcClient(std::unique_ptr<ChannelPool> pool, const EtcdConfig& config,
                     const RequestLimits& limits)
    : pool_(std::move(pool)),
      username_(config.username),
      password_(config.password),
      request_timeout_(config.request_timeout),
      connect_wait_(std::min({std::chrono::milliseconds(config.dial_timeout),
                              config.request_timeout / 4, std::chrono::milliseconds(1000)})),
      inflight_(limits.max_inflight) {
  std::tie(closing_, close_) = WithCancel(Context::Background());
}

RpcClient::~RpcClient() { Shutdown(); }

void RpcClient::Shutdown() {
  close_();              // wakes the calls waiting for a connection, a login or a retry
  registry_.Shutdown();  // every call completed: none is left on the queue
  inflight_.Drain();     // calls waiting for a slot fail now, as closed
  std::shared_ptr<CompletionPoller> poller;
  {
    MutexLock guard(poller_mu_);
    poller_released_ = true;
    poller = std::move(poller_);
  }
  poller.reset();  // outside the lock: the last client's joins the poller's thread
}

grpc::CompletionQueue* RpcClient::Queue() {
  MutexLock guard(poller_mu_);
  if (!poller_ && !poller_released_) poller_ = CompletionPoller::Shared();
  return poller_ ? poller_->queue() : nullptr;
}

template <typename Response, typename Prepare>
void RpcClient::SendOnQueue(const Prepare& prepare, Response* response,
                            std::function<void(grpc::Status)> done) {
  class Finished final : public CompletionPoller::Tag {
   public:
    explicit Finished(std::function<void(grpc::Status)> done) : done_(std::move(done)) {}
    // A unary call's Finish always comes back, `ok` or not; its status tells what happened.
    void Proceed(bool) override {
      // The reader lives in the call's arena, which goes with the ClientContext that `done` may
      // destroy: it goes first.
      reader_.reset();
      std::function<void(grpc::Status)> done = std::move(done_);
      grpc::Status status = std::move(status_);
      delete this;
      done(std::move(status));
    }
    std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader_;
    grpc::Status status_;

   private:
    std::function<void(grpc::Status)> done_;
  };
  auto* finished = new Finished(std::move(done));  // deletes itself once it came back
  finished->reader_ = prepare();
  grpc::ClientAsyncResponseReader<Response>* const reader = finished->reader_.get();
  grpc::Status* const status = &finished->status_;
  reader->StartCall();
  // Nothing of `finished` is read after this: the poller may be done with it at once.
  CompletionPoller::HandOver();
  // The queue hands back the void* it was given: always a CompletionPoller::Tag*.
  reader->Finish(response, status, static_cast<CompletionPoller::Tag*>(finished));
}

std::chrono::steady_clock::time_point RpcClient::ConnectWaitEnd() const {
  return std::chrono::steady_clock::now() + connect_wait_;
}

void RpcClient::ForgetTokens() {
  for (size_t i = 0; i < pool_->size(); ++i) pool_->member(i).token.Invalidate();
}

void RpcClient::PrepareContext(grpc::ClientContext* context, const Context& ctx,
                               const std::string& token,
                               std::chrono::steady_clock::time_point deadline) const {
  auto now = std::chrono::steady_clock::now();
  if (std::optional<std::chrono::steady_clock::time_point> d = ctx.Deadline(); d && *d < deadline) {
    deadline = *d;
  }
  context->set_deadline(std::chrono::system_clock::now() + (deadline - now));
  if (!token.empty()) context->AddMetadata("token", token);
}

absl::Status RpcClient::Conclude(size_t index, const grpc::Status& status, std::string_view what,
                                 const grpc::ClientContext& context, const Context* ctx) {
  Member& member = pool_->member(index);
  std::string peer = PeerOf(context);
  absl::Status translated =
      TranslateStatus(status, CallFacts{.what = what,
                                        .peer = peer.empty() ? member.address : peer,
                                        .ctx = ctx,
                                        .request_timeout = request_timeout_,
                                        .closed = registry_.shut_down()});
  if (member.token.enabled() && IsAuthTokenError(translated)) member.token.Invalidate();
  const bool caller_gave_up = ctx != nullptr && ctx->Done();
  // A call or stream cancelled here (its caller gave up, or a stream was replaced) says nothing
  // of the member: in particular it must not clear what Abandon just reported.
  if (status.error_code() != grpc::StatusCode::CANCELLED) {
    pool_->Report(index, !caller_gave_up && IsEndpointFailure(translated));
  }
  return translated;
}

grpc::Status RpcClient::AwaitCompletion(const Starter& start, Connection& connection,
                                        grpc::ClientContext* context) {
  // Shared with the callback, which wakes the caller after releasing the lock (woken under it,
  // the caller would block on it again at once) and so must keep it alive meanwhile.
  struct Completion {
    Mutex mu;
    CondVar cv;
    bool done ABSL_GUARDED_BY(mu) = false;
    grpc::Status result ABSL_GUARDED_BY(mu);
  };
  auto completion = std::make_shared<Completion>();
  start(connection, context, [completion](grpc::Status s) {
    {
      MutexLock guard(completion->mu);
      completion->result = std::move(s);
      completion->done = true;
    }
    completion->cv.notify_all();
  });
  MutexLock lock(completion->mu);
  completion->cv.wait(
      lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(completion->mu) { return completion->done; });
  return completion->result;
}

RpcClient::Attempt RpcClient::CallOnce(size_t index, const Context& ctx, std::string_view what,
                                       const std::string& token,
                                       std::chrono::steady_clock::time_point deadline,
                                       const Starter& start) {
  auto context = std::make_unique<grpc::ClientContext>();
  PrepareContext(context.get(), ctx, token, deadline);
  if (!registry_.Register(context.get())) {
    return Attempt{absl::FailedPreconditionError("etcd backend is closed")};
  }
  grpc::Status result;
  const std::shared_ptr<CallCanceller> canceller = CallCanceller::Start(context.get());
  {
    ScopedContextCallback cancel(ctx, [&canceller] { canceller->Cancel(); });
    result = AwaitCompletion(start, *pool_->member(index).connection(), context.get());
  }
  canceller->Detach();
  registry_.Unregister(context.get());
  Attempt attempt;
  attempt.not_connected = IsNotConnectedError(result);
  attempt.status = Conclude(index, result, what, *context, &ctx);
  context.reset();
  registry_.ContextDestroyed();
  return attempt;
}

absl::StatusOr<std::string> RpcClient::TokenFor(size_t index, const Context& ctx,
                                                std::chrono::steady_clock::time_point deadline,
                                                bool* not_connected) {
  *not_connected = false;
  return pool_->member(index).token.Get(ctx, [&](const Context& login_ctx) {
    etcdserverpb::AuthenticateRequest request;
    request.set_name(username_);
    request.set_password(password_);
    etcdserverpb::AuthenticateResponse response;
    Attempt attempt = CallOnce(
        index, login_ctx, absl::StrCat("authenticate as user '", username_, "'"),
        /*token=*/"", deadline, [&](Connection& m, grpc::ClientContext* c, auto done) {
          SendOnQueue([&] { return m.auth->PrepareAsyncAuthenticate(c, request, Queue()); },
                      &response, std::move(done));
        });
    *not_connected = attempt.not_connected;
    if (!attempt.status.ok()) return absl::StatusOr<std::string>(attempt.status);
    return absl::StatusOr<std::string>(response.token());
  });
}

absl::Status RpcClient::BlockingCall(const Context& caller_ctx, std::string_view what,
                                     bool with_token, const Starter& start,
                                     std::optional<std::chrono::steady_clock::time_point> until) {
  if (CompletionPoller::OnPollerThread()) {
    return absl::FailedPreconditionError(
        absl::StrCat("etcd ", ToAbsl(what),
                     ": a blocking call from the completion of an asynchronous one would wait "
                     "for itself; start it asynchronously"));
  }
  // Done with the caller's context, or when this client shuts down: a call waiting for a
  // connection, a login or its next round does not hold Shutdown up.
  auto [ctx, cancel_call] = WithCancel(caller_ctx);
  ScopedContextCallback on_close(closing_, cancel_call);
  const auto deadline = until.value_or(std::chrono::steady_clock::now() + request_timeout_);
  std::vector<bool> tried(pool_->size(), false);
  bool logged_in_again = false;
  absl::Status not_connected;  // the last reason why no connection was ready
  for (int round = 0;;) {
    if (closing_.Done()) {
      return absl::FailedPreconditionError(
          absl::StrCat("etcd ", ToAbsl(what), ": etcd backend is closed"));
    }
    if (ctx.Done()) {
      return absl::Status(ctx.Err().code(),
                          absl::StrCat("etcd ", ToAbsl(what), ": ", ctx.Err().message()));
    }
    std::optional<size_t> picked = pool_->Pick(tried, ctx, std::min(deadline, ConnectWaitEnd()));
    if (!picked) {
      // No endpoint could take the request this round: try them all again after a pause, until
      // the deadline. gRPC's last reason (refused, TLS handshake failed, ...) then says more than
      // the deadline.
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) {
        return absl::Status(
            not_connected.code(),
            absl::StrCat(not_connected.message(), " (no connection within the request timeout of ",
                         request_timeout_.count(), " ms)"));
      }
      // The library's backoff (full jitter under a doubling ceiling), as every retry.
      ctx.WaitFor(std::min<std::chrono::steady_clock::duration>(
          left, internal::BackoffDelay(round++, kNotConnectedRetryBase, kNotConnectedRetryMax)));
      std::fill(tried.begin(), tried.end(), false);
      continue;
    }
    const size_t index = *picked;
    std::string token;
    if (with_token) {
      bool login_not_connected = false;
      absl::StatusOr<std::string> t = TokenFor(index, ctx, deadline, &login_not_connected);
      if (!t.ok() && login_not_connected) {
        tried[index] = true;
        not_connected = t.status();
        continue;
      }
      if (!t.ok()) return t.status();
      token = *std::move(t);
    }
    Attempt attempt = CallOnce(index, ctx, what, token, deadline, start);
    // Conclude forgot a refused token: the next attempt logs in again. A request refused for a
    // change of users or roles under way is sent again too, token or not.
    if (with_token && !logged_in_again &&
        ((pool_->member(index).token.enabled() && IsAuthTokenError(attempt.status)) ||
         IsAuthRevisionError(attempt.status))) {
      logged_in_again = true;
      continue;
    }
    if (attempt.not_connected) {
      tried[index] = true;
      not_connected = attempt.status;
      continue;
    }
    if (!not_connected.ok() && !ctx.Done() &&
        attempt.status.code() == absl::StatusCode::kDeadlineExceeded) {
      // Out of time while some endpoint was still connecting: its reason says more.
      return absl::Status(
          not_connected.code(),
          absl::StrCat(not_connected.message(), " (no connection within the request timeout of ",
                       request_timeout_.count(), " ms)"));
    }
    return attempt.status;
  }
}

absl::Status RpcClient::AdmittedCall(const Context& ctx, std::string_view what,
                                     const Starter& start) {
  if (!inflight_.Enter(ctx)) {
    return absl::Status(
        ctx.Err().code(),
        absl::StrCat("etcd ", ToAbsl(what), ": waiting for one of the ", inflight_.limit(),
                     " requests in flight (max_inflight) to end: ", ctx.Err().message()));
  }
  absl::Status status = BlockingCall(ctx, what, /*with_token=*/true, start);
  inflight_.Leave();
  return status;
}

absl::Status RpcClient::Range(const Context& ctx, std::string_view what,
                              const etcdserverpb::RangeRequest& request,
                              etcdserverpb::RangeResponse* response) {
  return AdmittedCall(ctx, what, [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.kv->PrepareAsyncRange(c, request, Queue()); }, response,
                std::move(done));
  });
}

absl::Status RpcClient::Put(const Context& ctx, std::string_view what,
                            const etcdserverpb::PutRequest& request,
                            etcdserverpb::PutResponse* response) {
  return AdmittedCall(ctx, what, [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.kv->PrepareAsyncPut(c, request, Queue()); }, response,
                std::move(done));
  });
}

absl::Status RpcClient::DeleteRange(const Context& ctx, std::string_view what,
                                    const etcdserverpb::DeleteRangeRequest& request,
                                    etcdserverpb::DeleteRangeResponse* response) {
  return AdmittedCall(ctx, what, [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.kv->PrepareAsyncDeleteRange(c, request, Queue()); }, response,
                std::move(done));
  });
}

absl::Status RpcClient::Txn(const Context& ctx, std::string_view what,
                            const etcdserverpb::TxnRequest& request,
                            etcdserverpb::TxnResponse* response) {
  return AdmittedCall(ctx, what, [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.kv->PrepareAsyncTxn(c, request, Queue()); }, response,
                std::move(done));
  });
}

absl::Status RpcClient::LeaseGrant(const Context& ctx,
                                   const etcdserverpb::LeaseGrantRequest& request,
                                   etcdserverpb::LeaseGrantResponse* response) {
  return AdmittedCall(ctx, "lease grant", [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.lease->PrepareAsyncLeaseGrant(c, request, Queue()); }, response,
                std::move(done));
  });
}

absl::Status RpcClient::LeaseRevoke(const Context& ctx,
                                    const etcdserverpb::LeaseRevokeRequest& request,
                                    etcdserverpb::LeaseRevokeResponse* response) {
  return AdmittedCall(ctx, "lease revoke", [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.lease->PrepareAsyncLeaseRevoke(c, request, Queue()); }, response,
                std::move(done));
  });
}

// An asynchronous unary call: what it is, the attempt in flight, and the completion. Whoever drops
// the last reference to a call that did not complete (an executor shut down with its task queued)
// completes it as closed, so that `finish` runs exactly once.
struct RpcClient::UnaryCall {
  UnaryCall(const Context& ctx, std::string what, std::chrono::milliseconds timeout)
      : ctx(ctx), what(std::move(what)), deadline(std::chrono::steady_clock::now() + timeout) {}
  UnaryCall(const UnaryCall&) = delete;
  UnaryCall& operator=(const UnaryCall&) = delete;
  ~UnaryCall() {
    if (finish) {
      finish(
          absl::FailedPreconditionError(absl::StrCat("etcd ", what, ": etcd backend is closed")));
    }
  }

  void Finish(const absl::Status& status) {
    std::function<void(const absl::Status&)> f = std::move(finish);
    finish = nullptr;
    f(status);
  }

  const Context ctx;
  const std::string what;
  const std::chrono::steady_clock::time_point deadline;
  Starter start;                                    // sends the request on a member
  std::function<void(const absl::Status&)> finish;  // null once run
  // The attempt in flight.
  std::unique_ptr<grpc::ClientContext> context;
  size_t index = 0;
  uint64_t cancel_callback = 0;  // on ctx, cancels `context` through `canceller`
  std::shared_ptr<CallCanceller> canceller;
};

template <typename Request, typename Response, typename Rpc>
void RpcClient::StartUnary(Executor& slow, const Context& ctx, std::string what, Request request,
                           Callback<Response> done, Rpc rpc) {
  // The request and response live as long as the call, which the gRPC completion holds.
  struct Messages {
    Request request;
    Response response;
  };
  auto messages = std::make_shared<Messages>();
  messages->request = std::move(request);
  auto call = std::make_shared<UnaryCall>(ctx, std::move(what), request_timeout_);
  Messages* m = messages.get();
  call->start = [this, m, rpc](Connection& member, grpc::ClientContext* context,
                               std::function<void(grpc::Status)> sent) {
    SendOnQueue([&] { return rpc(member, context, m->request, Queue()); }, &m->response,
                std::move(sent));
  };
  call->finish = [this, messages = std::move(messages),
                  done = std::move(done)](const absl::Status& status) {
    done(status, messages->response);
    inflight_.Leave();
  };
  // Launched now, or once a request in flight ended (then on the thread that completed it:
  // Launch never blocks).
  inflight_.EnterAsync(
      [this, &slow, call = std::move(call)]() mutable { Launch(slow, std::move(call)); });
}

void RpcClient::Launch(Executor& slow, std::shared_ptr<UnaryCall> call) {
  if (call->ctx.Done()) {
    call->Finish(absl::Status(call->ctx.Err().code(),
                              absl::StrCat("etcd ", call->what, ": ", call->ctx.Err().message())));
    return;
  }
  // Without waiting: a member still connecting takes the call, which waits for its connection.
  std::optional<size_t> picked =
      pool_->Pick({}, call->ctx, std::chrono::steady_clock::time_point::min());
  std::string token;
  if (picked && pool_->member(*picked).token.enabled()) {
    token = pool_->member(*picked).token.Current();
    if (token.empty()) picked.reset();  // logging in blocks
  }
  if (!picked) {
    RunBlocking(slow, std::move(call));
    return;
  }
  call->index = *picked;
  call->context = std::make_unique<grpc::ClientContext>();
  grpc::ClientContext* const context = call->context.get();
  PrepareContext(context, call->ctx, token, call->deadline);
  if (!registry_.Register(context)) {
    call->context.reset();
    call->Finish(absl::FailedPreconditionError("etcd backend is closed"));
    return;
  }
  call->canceller = CallCanceller::Start(context);
  call->cancel_callback =
      call->ctx.AddCallback([canceller = call->canceller] { canceller->Cancel(); });
  UnaryCall* const c = call.get();
  c->start(*pool_->member(c->index).connection(), context,
           [this, &slow, call = std::move(call)](grpc::Status status) mutable {
             OnAttemptDone(slow, std::move(call), status);
           });
}

void RpcClient::OnAttemptDone(Executor& slow, std::shared_ptr<UnaryCall> call,
                              const grpc::Status& status) {
  if (call->cancel_callback != 0) call->ctx.RemoveCallback(call->cancel_callback);
  if (call->canceller) call->canceller->Detach();
  registry_.Unregister(call->context.get());
  const bool not_connected = IsNotConnectedError(status);
  absl::Status result = Conclude(call->index, status, call->what, *call->context, &call->ctx);
  call->context.reset();
  const bool token_refused =
      (pool_->member(call->index).token.enabled() && IsAuthTokenError(result)) ||
      IsAuthRevisionError(result);
  // As BlockingCall: a request that was not sent goes elsewhere, a refused token is renewed
  // once (the blocking call's own attempt logs in again, and does not retry a second refusal),
  // a request refused for a change of users or roles is sent once more.
  if (!call->ctx.Done() && (not_connected || token_refused)) {
    RunBlocking(slow, std::move(call));
  } else {
    call->Finish(result);
  }
  // The attempt's last use of this client: Shutdown waits for it, so `finish` ran meanwhile.
  registry_.ContextDestroyed();
}

void RpcClient::RunBlocking(Executor& slow, std::shared_ptr<UnaryCall> call) {
  slow.Post([this, call = std::move(call)] {
    call->Finish(
        BlockingCall(call->ctx, call->what, /*with_token=*/true, call->start, call->deadline));
  });
}

void RpcClient::PutAsync(Executor& slow, const Context& ctx, std::string what,
                         etcdserverpb::PutRequest request,
                         Callback<etcdserverpb::PutResponse> done) {
  StartUnary(slow, ctx, std::move(what), std::move(request), std::move(done),
             [](Connection& m, grpc::ClientContext* c, const etcdserverpb::PutRequest& request,
                grpc::CompletionQueue* queue) { return m.kv->PrepareAsyncPut(c, request, queue); });
}

void RpcClient::DeleteRangeAsync(Executor& slow, const Context& ctx, std::string what,
                                 etcdserverpb::DeleteRangeRequest request,
                                 Callback<etcdserverpb::DeleteRangeResponse> done) {
  StartUnary(slow, ctx, std::move(what), std::move(request), std::move(done),
             [](Connection& m, grpc::ClientContext* c,
                const etcdserverpb::DeleteRangeRequest& request, grpc::CompletionQueue* queue) {
               return m.kv->PrepareAsyncDeleteRange(c, request, queue);
             });
}

void RpcClient::RangeAsync(Executor& slow, const Context& ctx, std::string what,
                           etcdserverpb::RangeRequest request,
                           Callback<etcdserverpb::RangeResponse> done) {
  StartUnary(
      slow, ctx, std::move(what), std::move(request), std::move(done),
      [](Connection& m, grpc::ClientContext* c, const etcdserverpb::RangeRequest& request,
         grpc::CompletionQueue* queue) { return m.kv->PrepareAsyncRange(c, request, queue); });
}

void RpcClient::AsyncRange(std::string what, const etcdserverpb::RangeRequest& request,
                           Callback<etcdserverpb::RangeResponse> done) {
  struct Call {
    grpc::ClientContext context;
    etcdserverpb::RangeRequest request;
    etcdserverpb::RangeResponse response;
  };
  auto call = std::make_shared<Call>();
  call->request = request;
  const auto deadline = std::chrono::steady_clock::now() + request_timeout_;
  const size_t index = *pool_->Pick({}, closing_, ConnectWaitEnd());
  bool not_connected = false;
  absl::StatusOr<std::string> token = TokenFor(index, closing_, deadline, &not_connected);
  if (!token.ok()) {
    done(token.status(), call->response);
    return;
  }
  PrepareContext(&call->context, Context(), *token, deadline);
  if (!registry_.Register(&call->context)) {
    done(absl::FailedPreconditionError("etcd backend is closed"), call->response);
    return;
  }
  // Only the callback owns the call: it destroys the ClientContext before Release (see
  // CallRegistry).
  Call* const c = call.get();
  std::shared_ptr<Connection> connection = pool_->member(index).connection();
  SendOnQueue([&] { return connection->kv->PrepareAsyncRange(&c->context, c->request, Queue()); },
              &c->response,
              [this, index, call = std::move(call), what = std::move(what),
               done = std::move(done)](grpc::Status s) mutable {
                absl::Status status = Conclude(index, s, what, call->context, nullptr);
                done(status, call->response);
                done = nullptr;
                registry_.Unregister(&call->context);
                call.reset();
                registry_.ContextDestroyed();
              });
}

std::vector<RpcClient::EndpointStatus> RpcClient::StatusOfEndpoints(
    std::chrono::milliseconds timeout) {
  struct Call {
    grpc::ClientContext context;
    etcdserverpb::StatusRequest request;
  };
  const size_t n = pool_->size();
  std::vector<EndpointStatus> results(n);
  if (CompletionPoller::OnPollerThread()) {
    // The replies would come on this very thread.
    for (size_t i = 0; i < n; ++i) {
      results[i].endpoint = pool_->member(i).address;
      results[i].status = absl::FailedPreconditionError(
          "etcd status: asked from the completion of an asynchronous call, which must not wait");
    }
    return results;
  }
  std::vector<Call> calls(n);
  Mutex mu;
  CondVar cv;
  size_t remaining = 0;
  size_t registered = 0;  // contexts to Release once destroyed
  auto deadline = std::chrono::system_clock::now() + timeout;
  for (size_t i = 0; i < n; ++i) {
    Member& member = pool_->member(i);
    results[i].endpoint = member.address;
    calls[i].context.set_deadline(deadline);
    // A status needs no login: the token, if one is held, is sent for servers that want it.
    if (std::string token = member.token.Current(); !token.empty()) {
      calls[i].context.AddMetadata("token", token);
    }
    if (!registry_.Register(&calls[i].context)) {
      results[i].status = absl::FailedPreconditionError("etcd backend is closed");
      continue;
    }
    ++registered;
    {
      MutexLock guard(mu);
      ++remaining;
    }
    SendOnQueue(
        [&] {
          return member.connection()->maintenance->PrepareAsyncStatus(&calls[i].context,
                                                                      calls[i].request, Queue());
        },
        &results[i].response,
        [&, i](grpc::Status s) {
          results[i].status = Conclude(i, s, "status", calls[i].context, nullptr);
          registry_.Unregister(&calls[i].context);
          MutexLock guard(mu);
          --remaining;
          cv.notify_all();
        });
  }
  {
    MutexLock lock(mu);
    cv.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return remaining == 0; });
  }
  calls.clear();
  for (size_t i = 0; i < registered; ++i) registry_.ContextDestroyed();
  return results;
}

namespace {

// A stream as its user sees it: Abandon also marks its member as failing in the pool. The pool
// belongs to the RpcClient, which the stream's users (the watch hub, the lease manager) keep
// alive while they hold streams.
template <typename Request>
class MemberStream final : public RequestStream<Request> {
 public:
  MemberStream(std::shared_ptr<RequestStream<Request>> stream, ChannelPool* pool, size_t index)
      : stream_(std::move(stream)), pool_(pool), index_(index) {}

  void Write(Request request) override { stream_->Write(std::move(request)); }
  void Cancel() override { stream_->Cancel(); }
  void Abandon() override {
    pool_->Report(index_, /*failed=*/true);
    stream_->Cancel();
  }

 private:
  const std::shared_ptr<RequestStream<Request>> stream_;
  ChannelPool* const pool_;
  const size_t index_;
};

}  // namespace

template <typename Stream>
absl::StatusOr<std::shared_ptr<Stream>> RpcClient::StartStream(
    std::string what, typename Stream::ReadHandler on_read, typename Stream::DoneHandler on_done,
    const std::function<std::unique_ptr<typename Stream::ReaderWriter>(
        Connection& connection, grpc::ClientContext* context, grpc::CompletionQueue* queue)>& bind,
    size_t* picked) {
  const size_t index = *pool_->Pick({}, closing_, ConnectWaitEnd());
  *picked = index;
  bool not_connected = false;
  absl::StatusOr<std::string> token = TokenFor(
      index, closing_, std::chrono::steady_clock::now() + request_timeout_, &not_connected);
  if (!token.ok()) return token.status();
  std::shared_ptr<Connection> connection = pool_->member(index).connection();
  grpc::CompletionQueue* const queue = Queue();
  if (queue == nullptr) return absl::FailedPreconditionError("etcd backend is closed");
  return Stream::Start(
      &registry_, queue,
      [this, index, what = std::move(what)](const grpc::Status& status,
                                            const grpc::ClientContext& context) {
        return Conclude(index, status, what, context, nullptr);
      },
      std::move(on_read), std::move(on_done),
      [&](grpc::ClientContext* context) {
        // With one endpoint, a stream waits for it to come back rather than failing at once; with
        // several, it fails, and the caller's retry goes to another endpoint.
        context->set_wait_for_ready(pool_->size() == 1);
        // Makes a member without a leader end the stream instead of keeping it silently.
        context->AddMetadata("hasleader", "true");
        if (!token->empty()) context->AddMetadata("token", *token);
      },
      [&](grpc::ClientContext* context, grpc::CompletionQueue* queue) {
        return bind(*connection, context, queue);
      });
}

absl::StatusOr<std::shared_ptr<WatchRequests>> RpcClient::StartWatchStream(
    ReadHandler<etcdserverpb::WatchResponse> on_read, DoneHandler on_done) {
  size_t index = 0;
  absl::StatusOr<std::shared_ptr<WatchStream>> stream = StartStream<WatchStream>(
      "watch", std::move(on_read), std::move(on_done),
      [](Connection& m, grpc::ClientContext* context, grpc::CompletionQueue* queue) {
        return m.watch->PrepareAsyncWatch(context, queue);
      },
      &index);
  if (!stream.ok()) return stream.status();
  return std::make_shared<MemberStream<etcdserverpb::WatchRequest>>(*std::move(stream), pool_.get(),
                                                                    index);
}

absl::StatusOr<std::shared_ptr<KeepAliveRequests>> RpcClient::StartKeepAliveStream(
    ReadHandler<etcdserverpb::LeaseKeepAliveResponse> on_read, DoneHandler on_done) {
  size_t index = 0;
  absl::StatusOr<std::shared_ptr<KeepAliveStream>> stream = StartStream<KeepAliveStream>(
      "lease keep-alive", std::move(on_read), std::move(on_done),
      [](Connection& m, grpc::ClientContext* context, grpc::CompletionQueue* queue) {
        return m.lease->PrepareAsyncLeaseKeepAlive(context, queue);
      },
      &index);
  if (!stream.ok()) return stream.status();
  return std::make_shared<MemberStream<etcdserverpb::LeaseKeepAliveRequest>>(*std::move(stream),
                                                                             pool_.get(), index);
}

}  // namespace kvstore::etcd

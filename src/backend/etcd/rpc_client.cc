#include "backend/etcd/rpc_client.h"

#include <grpcpp/alarm.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backend/etcd/channel_factory.h"
#include "backend/etcd/completion.h"
#include "backend/etcd/errors.h"
#include "backend/etcd/request_limits.h"
#include "core/backoff.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {
namespace {

// The pauses of a blocking call between rounds over endpoints that could not take it.
constexpr std::chrono::milliseconds kNotConnectedRetryBase(50);
constexpr std::chrono::milliseconds kNotConnectedRetryMax(1000);
// Single-key writes in flight before the next ones wait and go together (WriteBatcher). With 64
// writers (bench raw), 1 and 2 gave the same rate and CPU, 8 a quarter more CPU per write and
// no batching (1,000) three times as much; 2 lets a write pass one that is slow.
constexpr size_t kDirectWrites = 2;

// A result a completion sets once and a caller waits for. Shared between them: the completion
// may come after the caller stopped waiting.
template <typename T>
class ResultSlot {
 public:
  void Set(T value) {
    {
      MutexLock guard(mu_);
      value_ = std::move(value);
    }
    cv_.notify_all();
  }
  // Waits until it is set.
  T Wait() {
    MutexLock lock(mu_);
    cv_.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return value_.has_value(); });
    return *value_;
  }
  // Waits until it is set or `ctx` is done; nullopt when `ctx` ended first.
  std::optional<T> WaitOn(const Context& ctx) {
    MutexLock lock(mu_);
    ctx.WaitOn(lock, cv_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return value_.has_value(); });
    return value_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::optional<T> value_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

// A step of a unary call, due on the poller's thread (see StepOnPoller).
class RpcClient::StepAlarm final : public CompletionPoller::Tag {
 public:
  StepAlarm(RpcClient* client, CallPtr call, uint64_t wait)
      : client_(client), call_(std::move(call)), wait_(wait) {}
  void Set(grpc::CompletionQueue* queue, std::chrono::steady_clock::duration delay) {
    CompletionPoller::HandOver();
    alarm_.Set(queue,
               std::chrono::system_clock::now() +
                   std::chrono::duration_cast<std::chrono::system_clock::duration>(delay),
               static_cast<CompletionPoller::Tag*>(this));
  }
  void Cancel() { alarm_.Cancel(); }

  // Fired, or cancelled by Shutdown: the step runs either way (and then sees the client closed).
  void Proceed(bool) override {
    if (wait_ == 0 || client_->EndWait(call_, wait_)) client_->Step(call_);
    // Let go before Shutdown may end: the call may report closed as it goes.
    call_.reset();
    RpcClient* const client = client_;
    MutexLock guard(client->alarms_mu_);
    client->alarms_.erase(this);
    delete this;
    if (client->alarms_.empty()) client->alarms_cv_.notify_all();
  }

 private:
  RpcClient* const client_;
  CallPtr call_;
  const uint64_t wait_;
  grpc::Alarm alarm_;
};

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
      inflight_(limits.max_inflight),
      batcher_(
          WriteBatcher::Limits{.direct = kDirectWrites},
          [this](WriteBatcher::Write& write, WriteBatcher::Done done) {
            SendWrite(write, std::move(done));
          },
          [this](std::string what, const etcdserverpb::TxnRequest& request, auto done) {
            SendWriteTxn(std::move(what), request, std::move(done));
          }) {
  std::tie(closing_, close_) = WithCancel(Context::Background());
}

RpcClient::~RpcClient() { Shutdown(); }

void RpcClient::Shutdown() {
  close_();              // wakes the calls waiting for a connection, a login or a retry
  registry_.Shutdown();  // every attempt completed
  {
    // Steps due later come now (and finish their calls as closed); none is left on the queue.
    MutexLock lock(alarms_mu_);
    alarms_closed_ = true;
    for (StepAlarm* alarm : alarms_) alarm->Cancel();
    alarms_cv_.wait(lock,
                    [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(alarms_mu_) { return alarms_.empty(); });
  }
  inflight_.Drain();  // calls waiting for a slot fail now, as closed
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

// One unary call: what it is, how far it got (members tried, rounds, a login), the wait it is in
// and the attempt in flight. Its steps run one at a time: each starts the next, or a wait whose
// end (a timer, a login, the context or the client done) starts it. Whoever drops the last
// reference to a call that did not finish (a step discarded at shutdown) finishes it as closed.
struct RpcClient::UnaryCall {
  UnaryCall(CallOptions options, Context closing, Starter start, std::function<void(Outcome)> done,
            InflightGate* gate)
      : options(std::move(options)),
        wait_for_connection(this->options.wait_for_connection),
        closing(std::move(closing)),
        start(std::move(start)),
        done(std::move(done)),
        gate(gate) {}
  UnaryCall(const UnaryCall&) = delete;
  UnaryCall& operator=(const UnaryCall&) = delete;
  ~UnaryCall() {
    StopWaking();
    // Not finished (`done` reports closed as it goes): its slot goes back.
    if (admitted.exchange(false)) gate->Leave();
  }

  void Finish(Outcome outcome) {
    done(std::move(outcome));
    // The slot goes back after the result is out, as the next call may take it at once.
    if (admitted.exchange(false)) gate->Leave();
  }
  // Removes the wakers of the last wait.
  void StopWaking() {
    if (ctx_waker != 0) options.ctx.RemoveCallback(std::exchange(ctx_waker, 0));
    if (close_waker != 0) closing.RemoveCallback(std::exchange(close_waker, 0));
  }

  const CallOptions options;
  // Whether the next attempt waits for the connection, and whether one did (once per call, so
  // that nothing can spin on an attempt that still fails fast).
  bool wait_for_connection;
  bool waited_for_connection = false;
  const Context closing;  // the client's: done at Shutdown
  const Starter start;    // sends the request on a member
  Completion<Outcome> done;
  InflightGate* const gate;            // max_inflight's
  std::atomic<bool> admitted = false;  // holds a slot of `gate` now
  std::atomic<bool> entered = false;   // was given one (or needs none)

  // How far it got.
  std::vector<bool> tried;     // members the request could not be sent to, this round
  int round = 0;               // rounds over every member
  absl::Status not_connected;  // why the last member tried could not take it
  bool logged_in_again = false;
  // Until when the pick under way waits for a member still connecting.
  std::optional<std::chrono::steady_clock::time_point> connect_wait_end;
  std::optional<AuthToken::Result> login;  // the login waited for, once it ended
  size_t login_member = 0;

  // The wait under way: its number (0: none), and the callbacks on the contexts that end it.
  std::atomic<uint64_t> wait = 0;
  uint64_t waits = 0;
  uint64_t ctx_waker = 0, close_waker = 0;

  // The attempt in flight.
  std::unique_ptr<grpc::ClientContext> context;
  size_t index = 0;
  uint64_t cancel_callback = 0;  // on the caller's context, cancels `context`
  std::shared_ptr<CallCanceller> canceller;
};

absl::Status RpcClient::NoConnectionInTime(const absl::Status& reason) const {
  return absl::Status(reason.code(), absl::StrCat(reason.message(),
                                                  " (no connection within the request timeout of ",
                                                  request_timeout_.count(), " ms)"));
}

absl::Status RpcClient::CheckMayWait(std::string_view what) {
  if (!CompletionPoller::OnPollerThread()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("etcd ", ToAbsl(what),
                   ": a blocking call from the completion of an asynchronous one would wait "
                   "for itself; start it asynchronously"));
}

RpcClient::CallPtr RpcClient::Call(CallOptions options, Starter start,
                                   std::function<void(Outcome)> done) {
  const bool admitted = options.admitted;
  auto call = std::make_shared<UnaryCall>(std::move(options), closing_, std::move(start),
                                          std::move(done), &inflight_);
  call->tried.assign(pool_->size(), false);
  if (!admitted) {
    call->entered.store(true);
    Step(call);
    return call;
  }
  // Now, or once a request in flight ended (then on the thread that completed it: Step never
  // blocks).
  inflight_.EnterAsync([this, call] {
    call->admitted.store(true);
    call->entered.store(true);
    Step(call);
  });
  return call;
}

void RpcClient::Step(const CallPtr& call) {
  UnaryCall& c = *call;
  const CallOptions& o = c.options;
  c.StopWaking();
  if (closing_.Done()) {
    return c.Finish(
        absl::FailedPreconditionError(absl::StrCat("etcd ", o.what, ": etcd backend is closed")));
  }
  if (o.ctx.Done()) {
    return c.Finish(absl::Status(o.ctx.Err().code(),
                                 absl::StrCat("etcd ", o.what, ": ", o.ctx.Err().message())));
  }
  if (c.login) {
    const AuthToken::Result login = *std::move(c.login);
    c.login.reset();
    if (login.token.ok()) return Send(call, c.login_member, *login.token);
    if (!c.not_connected.ok() &&
        login.token.status().code() == absl::StatusCode::kDeadlineExceeded) {
      // The login waited for a connection that never came: its reason says more.
      return c.Finish(Outcome(NoConnectionInTime(c.not_connected), /*not_sent=*/true));
    }
    if (!login.not_sent || o.member) return c.Finish(Outcome(login.token.status(), login.not_sent));
    c.tried[c.login_member] = true;
    c.not_connected = login.token.status();
  }
  size_t index = 0;
  if (o.member) {
    index = *o.member;
  } else {
    const auto now = std::chrono::steady_clock::now();
    if (!c.connect_wait_end) c.connect_wait_end = std::min(o.deadline, now + connect_wait_);
    bool connecting = false;
    std::optional<size_t> picked = pool_->TryPick(c.tried, &connecting);
    if (picked && connecting && now < *c.connect_wait_end) {
      // Connections are being made: the first one up takes the call.
      return StepAfter(call, ChannelPool::kConnectPoll);
    }
    c.connect_wait_end.reset();
    if (!picked) {
      // No endpoint could take the request this round: try them all again after a pause, until
      // the deadline. gRPC's last reason (refused, TLS handshake failed, ...) then says more than
      // the deadline.
      const auto left = o.deadline - now;
      if (left <= std::chrono::steady_clock::duration::zero()) {
        return c.Finish(Outcome(NoConnectionInTime(c.not_connected), /*not_sent=*/true));
      }
      std::fill(c.tried.begin(), c.tried.end(), false);
      if (pool_->size() == 1 && !c.waited_for_connection) {
        // The one endpoint cannot connect (its reason is in not_connected): the next attempt
        // waits inside gRPC until the channel is connected or the deadline passes, instead of
        // failing fast at every backoff step. Such a call costs nothing until the connection is
        // back, and then starts at once. Once per call: one that still failed fast backs off.
        c.waited_for_connection = c.wait_for_connection = true;
        return Step(call);
      }
      c.wait_for_connection = false;
      // The library's backoff (full jitter under a doubling ceiling), as every retry.
      return StepAfter(call, std::min<std::chrono::steady_clock::duration>(
                                 left, internal::BackoffDelay(c.round++, kNotConnectedRetryBase,
                                                              kNotConnectedRetryMax)));
    }
    index = *picked;
  }
  Member& member = pool_->member(index);
  if (o.token == TokenUse::kNone || !member.token.enabled()) return Send(call, index, "");
  std::string token = member.token.Current();
  if (token.empty() && o.token == TokenUse::kLogIn) return AwaitToken(call, index);
  Send(call, index, token);
}

void RpcClient::AwaitToken(const CallPtr& call, size_t index) {
  call->login_member = index;
  const bool wait_for_ready = call->wait_for_connection;
  const auto deadline = call->options.deadline;
  const uint64_t wait = Suspend(call);
  pool_->member(index).token.Get(
      [this, index, deadline, wait_for_ready](AuthToken::Done done) {
        LogIn(index, deadline, wait_for_ready, std::move(done));
      },
      [this, call, wait](const AuthToken::Result& result) {
        Resume(call, wait, [&result](UnaryCall& c) { c.login = result; });
      });
}

void RpcClient::LogIn(size_t index, std::chrono::steady_clock::time_point deadline,
                      bool wait_for_connection, AuthToken::Done done) {
  struct Messages {
    etcdserverpb::AuthenticateRequest request;
    etcdserverpb::AuthenticateResponse response;
  };
  auto m = std::make_shared<Messages>();
  m->request.set_name(username_);
  m->request.set_password(password_);
  // On the client's context, not a caller's: the calls waiting for this login need it even if
  // the one that started it gives up.
  Call(
      CallOptions{.ctx = closing_,
                  .what = absl::StrCat("authenticate as user '", username_, "'"),
                  .deadline = deadline,
                  .token = TokenUse::kNone,
                  .admitted = false,
                  .wait_for_connection = wait_for_connection,
                  .member = index},
      [this, m](Connection& c, grpc::ClientContext* context, auto sent) {
        SendOnQueue([&] { return c.auth->PrepareAsyncAuthenticate(context, m->request, Queue()); },
                    &m->response, std::move(sent));
      },
      [m, done = std::move(done)](Outcome outcome) {
        if (!outcome.status.ok()) return done(AuthToken::Result(outcome.status, outcome.not_sent));
        done(AuthToken::Result(m->response.token()));
      });
}

void RpcClient::Send(const CallPtr& call, size_t index, const std::string& token) {
  UnaryCall& c = *call;
  c.index = index;
  c.context = std::make_unique<grpc::ClientContext>();
  grpc::ClientContext* const context = c.context.get();
  PrepareContext(context, c.options.ctx, token, c.options.deadline);
  context->set_wait_for_ready(c.wait_for_connection);
  if (!registry_.Register(context)) {
    c.context.reset();
    return c.Finish(absl::FailedPreconditionError(
        absl::StrCat("etcd ", c.options.what, ": etcd backend is closed")));
  }
  c.canceller = CallCanceller::Start(context);
  c.cancel_callback = c.options.ctx.AddCallback([canceller = c.canceller] { canceller->Cancel(); });
  c.start(*pool_->member(index).connection(), context,
          [this, call](grpc::Status status) mutable { OnAttemptDone(std::move(call), status); });
}

void RpcClient::OnAttemptDone(CallPtr call, const grpc::Status& status) {
  UnaryCall& c = *call;
  const CallOptions& o = c.options;
  if (c.cancel_callback != 0) o.ctx.RemoveCallback(std::exchange(c.cancel_callback, 0));
  c.canceller->Detach();
  c.canceller.reset();
  registry_.Unregister(c.context.get());
  const bool not_sent = IsNotConnectedError(status);
  absl::Status result = Conclude(c.index, status, o.what, *c.context, &o.ctx);
  c.context.reset();
  const bool token_refused = (pool_->member(c.index).token.enabled() && IsAuthTokenError(result)) ||
                             IsAuthRevisionError(result);
  if (o.token == TokenUse::kLogIn && !c.logged_in_again && token_refused && !o.ctx.Done()) {
    // Conclude forgot a refused token: the next attempt logs in again, once. A request refused
    // for a change of users or roles under way is sent again too.
    c.logged_in_again = true;
    Step(call);
  } else if (not_sent && !o.member && !o.ctx.Done()) {
    // Not sent: the next member takes it.
    c.tried[c.index] = true;
    c.not_connected = result;
    Step(call);
  } else if (!c.not_connected.ok() && !o.ctx.Done() &&
             result.code() == absl::StatusCode::kDeadlineExceeded) {
    // Out of time while some endpoint was still connecting: its reason says more.
    c.Finish(Outcome(NoConnectionInTime(c.not_connected), /*not_sent=*/true));
  } else {
    c.Finish(Outcome(std::move(result), not_sent));
  }
  // Let go here, not by the completion after this returns: Shutdown may be over by then.
  call.reset();
  // The attempt's last use of this client: Shutdown waits for it, so the outcome is out by then.
  registry_.ContextDestroyed();
}

uint64_t RpcClient::Suspend(const CallPtr& call) {
  UnaryCall& c = *call;
  const uint64_t number = ++c.waits;
  // Weak: a waker left on a long-lived context must not keep the call.
  auto wake = [this, weak = std::weak_ptr<UnaryCall>(call), number] {
    if (CallPtr call = weak.lock()) Resume(call, number);
  };
  // Registered before the wait is published, so that a waker that runs at once finds nothing to
  // end; whatever ended meanwhile is seen just below.
  c.ctx_waker = c.options.ctx.AddCallback(wake);
  c.close_waker = closing_.AddCallback(wake);
  c.wait.store(number);
  if (c.options.ctx.Done() || closing_.Done()) Resume(call, number);
  return number;
}

bool RpcClient::EndWait(const CallPtr& call, uint64_t number,
                        const std::function<void(UnaryCall&)>& record) {
  uint64_t expected = number;
  if (!call->wait.compare_exchange_strong(expected, 0)) return false;  // ended already
  if (record) record(*call);
  return true;
}

void RpcClient::Resume(const CallPtr& call, uint64_t number,
                       const std::function<void(UnaryCall&)>& record) {
  if (EndWait(call, number, record)) StepOnPoller(call, {}, 0);
}

void RpcClient::StepAfter(const CallPtr& call, std::chrono::steady_clock::duration delay) {
  StepOnPoller(call, delay, Suspend(call));
}

void RpcClient::StepOnPoller(const CallPtr& call, std::chrono::steady_clock::duration delay,
                             uint64_t wait) {
  {
    MutexLock guard(alarms_mu_);
    grpc::CompletionQueue* const queue = alarms_closed_ ? nullptr : Queue();
    if (queue != nullptr) {
      auto* alarm = new StepAlarm(this, call, wait);  // deletes itself once it came back
      alarms_.insert(alarm);
      alarm->Set(queue, delay);
      return;
    }
  }
  // Shutting down: the step only finishes the call as closed.
  if (wait == 0 || EndWait(call, wait)) Step(call);
}

absl::Status RpcClient::CallAndWait(const Context& ctx, std::string_view what, Starter start) {
  if (absl::Status s = CheckMayWait(what); !s.ok()) return s;
  // Shared with the call, which may outlive this wait (below).
  struct Shared {
    ResultSlot<absl::Status> status;
    // Whether the request may refer to the caller's request and response: kUnsent until an attempt
    // starts (kSent), kAbandoned when the caller left before that.
    enum { kUnsent, kSent, kAbandoned };
    std::atomic<int> state = kUnsent;
  };
  auto shared = std::make_shared<Shared>();
  CallPtr call = Call(
      CallOptions{.ctx = ctx,
                  .what = std::string(what),
                  .deadline = std::chrono::steady_clock::now() + request_timeout_,
                  .member = std::nullopt},
      [shared, start = std::move(start)](Connection& c, grpc::ClientContext* context,
                                         std::function<void(grpc::Status)> sent) {
        int state = Shared::kUnsent;
        if (shared->state.compare_exchange_strong(state, Shared::kSent) || state == Shared::kSent) {
          return start(c, context, std::move(sent));
        }
        sent(grpc::Status(grpc::StatusCode::CANCELLED, "the caller left"));
      },
      [shared](Outcome outcome) { shared->status.Set(std::move(outcome.status)); });
  if (std::optional<absl::Status> status = shared->status.WaitOn(ctx)) return *std::move(status);
  // Done before an answer. A call with nothing sent yet is left to end by itself (it sends
  // nothing now); one with an attempt in flight is cancelled, and its outcome comes soon.
  int state = Shared::kUnsent;
  if (!shared->state.compare_exchange_strong(state, Shared::kAbandoned)) {
    return shared->status.Wait();
  }
  if (!call->entered.load()) {
    return absl::Status(
        ctx.Err().code(),
        absl::StrCat("etcd ", ToAbsl(what), ": waiting for one of the ", inflight_.limit(),
                     " requests in flight (max_inflight) to end: ", ctx.Err().message()));
  }
  return absl::Status(ctx.Err().code(),
                      absl::StrCat("etcd ", ToAbsl(what), ": ", ctx.Err().message()));
}

absl::Status RpcClient::Range(const Context& ctx, std::string_view what,
                              const etcdserverpb::RangeRequest& request,
                              etcdserverpb::RangeResponse* response) {
  return CallAndWait(ctx, what, [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.kv->PrepareAsyncRange(c, request, Queue()); }, response,
                std::move(done));
  });
}

absl::Status RpcClient::WriteAndWait(const Context& ctx, std::string_view what,
                                     etcdserverpb::RequestOp op,
                                     etcdserverpb::ResponseOp* response) {
  if (absl::Status s = CheckMayWait(what); !s.ok()) return s;
  // Shared with the write, which may end after the caller stopped waiting.
  struct Shared {
    ResultSlot<absl::Status> status;
    etcdserverpb::ResponseOp response;
  };
  auto shared = std::make_shared<Shared>();
  batcher_.Submit(WriteBatcher::Write{.ctx = ctx, .what = std::string(what), .op = std::move(op)},
                  [shared](const absl::Status& status, etcdserverpb::ResponseOp& response) {
                    shared->response.Swap(&response);
                    shared->status.Set(status);
                  });
  // A write whose context ends ends too (unsent if it was still waiting), except one waiting
  // for a max_inflight slot, which ends once it has one.
  if (std::optional<absl::Status> status = shared->status.WaitOn(ctx)) {
    if (status->ok()) response->Swap(&shared->response);
    return *std::move(status);
  }
  return absl::Status(ctx.Err().code(),
                      absl::StrCat("etcd ", ToAbsl(what), ": ", ctx.Err().message()));
}

absl::Status RpcClient::Put(const Context& ctx, std::string_view what,
                            etcdserverpb::PutRequest request, etcdserverpb::PutResponse* response) {
  etcdserverpb::RequestOp op;
  *op.mutable_request_put() = std::move(request);
  etcdserverpb::ResponseOp result;
  absl::Status status = WriteAndWait(ctx, what, std::move(op), &result);
  if (status.ok()) response->Swap(result.mutable_response_put());
  return status;
}

bool RpcClient::OfOneKey(const etcdserverpb::DeleteRangeRequest& request) {
  return request.range_end().empty();
}

absl::Status RpcClient::DeleteRange(const Context& ctx, std::string_view what,
                                    etcdserverpb::DeleteRangeRequest request,
                                    etcdserverpb::DeleteRangeResponse* response) {
  if (OfOneKey(request)) {
    etcdserverpb::RequestOp op;
    *op.mutable_request_delete_range() = std::move(request);
    etcdserverpb::ResponseOp result;
    absl::Status status = WriteAndWait(ctx, what, std::move(op), &result);
    if (status.ok()) response->Swap(result.mutable_response_delete_range());
    return status;
  }
  return CallAndWait(ctx, what, [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.kv->PrepareAsyncDeleteRange(c, request, Queue()); }, response,
                std::move(done));
  });
}

void RpcClient::SendWrite(WriteBatcher::Write& write, WriteBatcher::Done done) {
  if (write.op.has_request_put()) {
    return StartUnary(
        write.ctx, std::move(write.what), std::move(*write.op.mutable_request_put()),
        Callback<etcdserverpb::PutResponse>(
            [done = std::move(done)](const absl::Status& status, etcdserverpb::PutResponse& put) {
              etcdserverpb::ResponseOp response;
              response.mutable_response_put()->Swap(&put);
              done(status, response);
            }),
        [](Connection& m, grpc::ClientContext* c, const etcdserverpb::PutRequest& request,
           grpc::CompletionQueue* queue) { return m.kv->PrepareAsyncPut(c, request, queue); });
  }
  StartUnary(write.ctx, std::move(write.what), std::move(*write.op.mutable_request_delete_range()),
             Callback<etcdserverpb::DeleteRangeResponse>(
                 [done = std::move(done)](const absl::Status& status,
                                          etcdserverpb::DeleteRangeResponse& deleted) {
                   etcdserverpb::ResponseOp response;
                   response.mutable_response_delete_range()->Swap(&deleted);
                   done(status, response);
                 }),
             [](Connection& m, grpc::ClientContext* c,
                const etcdserverpb::DeleteRangeRequest& request, grpc::CompletionQueue* queue) {
               return m.kv->PrepareAsyncDeleteRange(c, request, queue);
             });
}

void RpcClient::SendWriteTxn(
    std::string what, const etcdserverpb::TxnRequest& request,
    std::function<void(const absl::Status&, etcdserverpb::TxnResponse&)> done) {
  // On the client's context: the writes' callers each wait on their own (see WriteBatcher).
  auto response = std::make_shared<etcdserverpb::TxnResponse>();
  Call(
      CallOptions{.ctx = closing_,
                  .what = std::move(what),
                  .deadline = std::chrono::steady_clock::now() + request_timeout_,
                  .member = std::nullopt},
      [this, &request, response](Connection& m, grpc::ClientContext* c,
                                 std::function<void(grpc::Status)> sent) {
        SendOnQueue([&] { return m.kv->PrepareAsyncTxn(c, request, Queue()); }, response.get(),
                    std::move(sent));
      },
      [response, done = std::move(done)](Outcome outcome) { done(outcome.status, *response); });
}

absl::Status RpcClient::Txn(const Context& ctx, std::string_view what,
                            const etcdserverpb::TxnRequest& request,
                            etcdserverpb::TxnResponse* response) {
  return CallAndWait(ctx, what, [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.kv->PrepareAsyncTxn(c, request, Queue()); }, response,
                std::move(done));
  });
}

absl::Status RpcClient::LeaseGrant(const Context& ctx,
                                   const etcdserverpb::LeaseGrantRequest& request,
                                   etcdserverpb::LeaseGrantResponse* response) {
  return CallAndWait(ctx, "lease grant", [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.lease->PrepareAsyncLeaseGrant(c, request, Queue()); }, response,
                std::move(done));
  });
}

absl::Status RpcClient::LeaseRevoke(const Context& ctx,
                                    const etcdserverpb::LeaseRevokeRequest& request,
                                    etcdserverpb::LeaseRevokeResponse* response) {
  return CallAndWait(ctx, "lease revoke", [&](Connection& m, grpc::ClientContext* c, auto done) {
    SendOnQueue([&] { return m.lease->PrepareAsyncLeaseRevoke(c, request, Queue()); }, response,
                std::move(done));
  });
}

template <typename Request, typename Response, typename Rpc>
void RpcClient::StartUnary(const Context& ctx, std::string what, Request request,
                           Callback<Response> done, Rpc rpc) {
  // The request and response live as long as the call.
  struct Messages {
    Request request;
    Response response;
  };
  auto m = std::make_shared<Messages>();
  m->request = std::move(request);
  Call(
      CallOptions{.ctx = ctx,
                  .what = std::move(what),
                  .deadline = std::chrono::steady_clock::now() + request_timeout_,
                  .member = std::nullopt},
      [this, m, rpc](Connection& member, grpc::ClientContext* context,
                     std::function<void(grpc::Status)> sent) {
        SendOnQueue([&] { return rpc(member, context, m->request, Queue()); }, &m->response,
                    std::move(sent));
      },
      [m, done = std::move(done)](Outcome outcome) { done(outcome.status, m->response); });
}

void RpcClient::PutAsync(const Context& ctx, std::string what, etcdserverpb::PutRequest request,
                         Callback<etcdserverpb::PutResponse> done) {
  etcdserverpb::RequestOp op;
  *op.mutable_request_put() = std::move(request);
  batcher_.Submit(
      WriteBatcher::Write{.ctx = ctx, .what = std::move(what), .op = std::move(op)},
      [done = std::move(done)](const absl::Status& status, etcdserverpb::ResponseOp& response) {
        done(status, *response.mutable_response_put());
      });
}

void RpcClient::DeleteRangeAsync(const Context& ctx, std::string what,
                                 etcdserverpb::DeleteRangeRequest request,
                                 Callback<etcdserverpb::DeleteRangeResponse> done) {
  if (OfOneKey(request)) {
    etcdserverpb::RequestOp op;
    *op.mutable_request_delete_range() = std::move(request);
    batcher_.Submit(
        WriteBatcher::Write{.ctx = ctx, .what = std::move(what), .op = std::move(op)},
        [done = std::move(done)](const absl::Status& status, etcdserverpb::ResponseOp& response) {
          done(status, *response.mutable_response_delete_range());
        });
    return;
  }
  StartUnary(ctx, std::move(what), std::move(request), std::move(done),
             [](Connection& m, grpc::ClientContext* c,
                const etcdserverpb::DeleteRangeRequest& request, grpc::CompletionQueue* queue) {
               return m.kv->PrepareAsyncDeleteRange(c, request, queue);
             });
}

void RpcClient::RangeAsync(const Context& ctx, std::string what, etcdserverpb::RangeRequest request,
                           Callback<etcdserverpb::RangeResponse> done) {
  StartUnary(
      ctx, std::move(what), std::move(request), std::move(done),
      [](Connection& m, grpc::ClientContext* c, const etcdserverpb::RangeRequest& request,
         grpc::CompletionQueue* queue) { return m.kv->PrepareAsyncRange(c, request, queue); });
}

void RpcClient::AsyncRange(std::string what, const etcdserverpb::RangeRequest& request,
                           Callback<etcdserverpb::RangeResponse> done) {
  // A watcher's list page: not counted against max_inflight, as a watcher asks for one at a time.
  struct Messages {
    etcdserverpb::RangeRequest request;
    etcdserverpb::RangeResponse response;
  };
  auto m = std::make_shared<Messages>();
  m->request = request;
  Call(
      CallOptions{.ctx = Context::Background(),
                  .what = std::move(what),
                  .deadline = std::chrono::steady_clock::now() + request_timeout_,
                  .admitted = false,
                  .member = std::nullopt},
      [this, m](Connection& member, grpc::ClientContext* context,
                std::function<void(grpc::Status)> sent) {
        SendOnQueue([&] { return member.kv->PrepareAsyncRange(context, m->request, Queue()); },
                    &m->response, std::move(sent));
      },
      [m, done = std::move(done)](Outcome outcome) { done(outcome.status, m->response); });
}

absl::StatusOr<std::string> RpcClient::TokenFor(size_t index) {
  if (absl::Status s = CheckMayWait("authenticate"); !s.ok()) return s;
  auto result = std::make_shared<ResultSlot<AuthToken::Result>>();
  pool_->member(index).token.Get(
      [this, index](AuthToken::Done done) {
        LogIn(index, std::chrono::steady_clock::now() + request_timeout_,
              /*wait_for_connection=*/false, std::move(done));
      },
      [result](const AuthToken::Result& r) { result->Set(r); });
  // The login ends by its deadline, or at once when this client shuts down.
  return result->Wait().token;
}

std::vector<RpcClient::EndpointStatus> RpcClient::StatusOfEndpoints(
    std::chrono::milliseconds timeout) {
  const size_t n = pool_->size();
  std::vector<EndpointStatus> results(n);
  for (size_t i = 0; i < n; ++i) results[i].endpoint = pool_->member(i).address;
  if (absl::Status s = CheckMayWait("status"); !s.ok()) {
    for (EndpointStatus& r : results) r.status = s;
    return results;
  }
  // Shared with the calls, which end by their deadline, or at once when this client shuts down.
  struct Calls {
    explicit Calls(size_t n) : remaining(n), requests(n), responses(n), statuses(n) {}
    Mutex mu;
    CondVar cv;
    size_t remaining ABSL_GUARDED_BY(mu);
    const std::vector<etcdserverpb::StatusRequest> requests;
    // Each written by its call's completion (before it counts down), read once all are in.
    std::vector<etcdserverpb::StatusResponse> responses;
    std::vector<absl::Status> statuses ABSL_GUARDED_BY(mu);
  };
  auto calls = std::make_shared<Calls>(n);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (size_t i = 0; i < n; ++i) {
    // A status needs no login: the token, if one is held, is sent for servers that want it.
    Call(
        CallOptions{.ctx = Context::Background(),
                    .what = "status",
                    .deadline = deadline,
                    .token = TokenUse::kIfHeld,
                    .admitted = false,
                    .member = i},
        [this, calls, i](Connection& m, grpc::ClientContext* context,
                         std::function<void(grpc::Status)> sent) {
          SendOnQueue(
              [&] {
                return m.maintenance->PrepareAsyncStatus(context, calls->requests[i], Queue());
              },
              &calls->responses[i], std::move(sent));
        },
        [calls, i](Outcome outcome) {
          MutexLock guard(calls->mu);
          calls->statuses[i] = std::move(outcome.status);
          if (--calls->remaining == 0) calls->cv.notify_all();
        });
  }
  MutexLock lock(calls->mu);
  calls->cv.wait(lock,
                 [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(calls->mu) { return calls->remaining == 0; });
  for (size_t i = 0; i < n; ++i) {
    results[i].status = std::move(calls->statuses[i]);
    results[i].response = std::move(calls->responses[i]);
  }
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
  absl::StatusOr<std::string> token = TokenFor(index);
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

#include "backend/etcd/rpc_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace kvstore::etcd {
namespace {

bool IsIpv4Literal(const std::string& host) {
  in_addr addr;
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool IsIpv6Literal(const std::string& host) {
  in6_addr addr;
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

// The first IPv4 address of `host`, or empty when it does not resolve to one.
std::string ResolveIpv4(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &result) != 0 || result == nullptr) return "";
  char text[INET_ADDRSTRLEN] = {};
  const auto* sin = reinterpret_cast<const sockaddr_in*>(result->ai_addr);
  inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
  freeaddrinfo(result);
  return text;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd config: cannot read ", what, " '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream data;
  data << in.rdbuf();
  return data.str();
}

// The gRPC target for all endpoints: an address list when every host is (or resolves to) an
// address of one family, so that the round-robin policy fails over between them.
std::string ChannelTarget(const std::vector<Endpoint>& endpoints) {
  if (endpoints.size() == 1) {
    const Endpoint& e = endpoints[0];
    if (IsIpv4Literal(e.host)) return "ipv4:" + e.Address();
    if (IsIpv6Literal(e.host)) return "ipv6:" + e.Address();
    return "dns:///" + e.Address();
  }
  bool all_ipv6 = true;
  for (const Endpoint& e : endpoints) all_ipv6 = all_ipv6 && IsIpv6Literal(e.host);
  std::vector<std::string> addresses;
  for (const Endpoint& e : endpoints) {
    if (all_ipv6) {
      addresses.push_back(e.Address());
      continue;
    }
    std::string ip = IsIpv4Literal(e.host) ? e.host : ResolveIpv4(e.host);
    if (!ip.empty()) addresses.push_back(absl::StrCat(ip, ":", e.port));
  }
  if (addresses.empty()) return "dns:///" + endpoints[0].Address();
  return (all_ipv6 ? "ipv6:" : "ipv4:") + absl::StrJoin(addresses, ",");
}

std::string PeerOf(const grpc::ClientContext& context) {
  std::string peer = context.peer();
  absl::string_view view = peer;
  if (!absl::ConsumePrefix(&view, "ipv4:")) absl::ConsumePrefix(&view, "ipv6:");
  return std::string(view);
}

}  // namespace

std::string Endpoint::Address() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<Endpoint> ParseEndpoint(std::string_view text) {
  Endpoint endpoint;
  absl::string_view rest = absl::StripAsciiWhitespace(ToAbsl(text));
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("etcd endpoint '", ToAbsl(text), "': ", why));
  };
  if (absl::ConsumePrefix(&rest, "https://")) {
    endpoint.tls = true;
  } else if (!absl::ConsumePrefix(&rest, "http://") && absl::StrContains(rest, "://")) {
    return invalid("only http:// and https:// endpoints are supported");
  }
  absl::ConsumeSuffix(&rest, "/");
  if (rest.empty()) return invalid("empty address");
  absl::string_view port_text;
  if (rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == absl::string_view::npos) return invalid("unterminated '['");
    endpoint.host = std::string(rest.substr(1, close - 1));
    absl::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid("expected ':' after ']'");
      port_text = after.substr(1);
    }
  } else {
    size_t colon = rest.rfind(':');
    if (colon == absl::string_view::npos) {
      endpoint.host = std::string(rest);
    } else {
      endpoint.host = std::string(rest.substr(0, colon));
      port_text = rest.substr(colon + 1);
    }
  }
  if (endpoint.host.empty()) return invalid("empty host");
  if (endpoint.host.find_first_of("/ ,") != std::string::npos) return invalid("bad host");
  endpoint.port = 2379;
  if (!port_text.empty()) {
    int port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port <= 0 ||
        port > 65535) {
      return invalid("bad port");
    }
    endpoint.port = port;
  }
  return endpoint;
}

bool IsAuthTokenError(const absl::Status& status) {
  if (status.ok()) return false;
  absl::string_view msg = status.message();
  return status.code() == absl::StatusCode::kUnauthenticated ||
         absl::StrContains(msg, "invalid auth token") ||
         absl::StrContains(msg, "revision of auth store is old") ||
         absl::StrContains(msg, "user name is empty");
}

bool IsCompactedError(const absl::Status& status) {
  return !status.ok() &&
         absl::StrContains(status.message(), "required revision has been compacted");
}

bool IsLeaseNotFoundError(const absl::Status& status) {
  return !status.ok() && absl::StrContains(status.message(), "requested lease not found");
}

absl::Status QpsLimiter::Wait(const Context& ctx) {
  if (qps_ <= 0) return absl::OkStatus();
  auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(1.0 / qps_));
  std::chrono::steady_clock::time_point slot;
  {
    std::lock_guard<std::mutex> guard(mu_);
    slot = std::max(next_, std::chrono::steady_clock::now());
    next_ = slot + interval;
  }
  auto wait = slot - std::chrono::steady_clock::now();
  if (wait > std::chrono::steady_clock::duration::zero() && ctx.WaitFor(wait)) return ctx.Err();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RpcClient>> RpcClient::Create(const EtcdConfig& config) {
  if (config.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd config: no endpoints given");
  }
  std::vector<Endpoint> endpoints;
  bool tls = !config.trusted_ca_file.empty() || !config.cert_file.empty();
  for (const std::string& text : config.endpoints) {
    absl::StatusOr<Endpoint> endpoint = ParseEndpoint(text);
    if (!endpoint.ok()) return endpoint.status();
    tls = tls || endpoint->tls;
    endpoints.push_back(*endpoint);
  }
  if (config.cert_file.empty() != config.key_file.empty()) {
    return absl::InvalidArgumentError(
        "etcd config: cert-file and key-file must be given together for mutual TLS");
  }
  if (config.username.empty() && !config.password.empty()) {
    return absl::InvalidArgumentError("etcd config: password given without username");
  }
  if (config.request_timeout <= std::chrono::milliseconds::zero() ||
      config.dial_timeout <= std::chrono::milliseconds::zero()) {
    return absl::InvalidArgumentError("etcd config: timeouts must be positive");
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls) {
    grpc::SslCredentialsOptions options;
    if (!config.trusted_ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadFile(config.trusted_ca_file, "trusted-ca-file");
      if (!ca.ok()) return ca.status();
      options.pem_root_certs = *ca;
    }
    if (!config.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFile(config.cert_file, "cert-file");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile(config.key_file, "key-file");
      if (!key.ok()) return key.status();
      options.pem_cert_chain = *cert;
      options.pem_private_key = *key;
    }
    credentials = grpc::SslCredentials(options);
  }

  grpc::ChannelArguments args;
  args.SetLoadBalancingPolicyName("round_robin");
  // Leaves out the optional filters (compression, idleness) that every call would pass through,
  // about a tenth of the client's instructions per call. Deadlines stay enforced on the client,
  // so an unresponsive member still times a call out.
  args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
  args.SetInt(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 1);
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // Detects members that stopped answering (paused, cut off) on an open connection. etcd refuses
  // pings more often than every 5 s, and pings without any call in flight.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(std::max<int64_t>(config.keepalive_time.count(), 5000)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(config.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Reconnects promptly after a member restart instead of gRPC's default of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(config.dial_timeout.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Each backend instance has its own connections, like a separate etcd client.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (tls) args.SetSslTargetNameOverride(endpoints[0].host);

  std::unique_ptr<RpcClient> client(new RpcClient());
  for (const Endpoint& e : endpoints) client->endpoint_addresses_.push_back(e.Address());
  client->endpoint_list_ = absl::StrJoin(client->endpoint_addresses_, ",");
  client->username_ = config.username;
  client->password_ = config.password;
  client->request_timeout_ = config.request_timeout;
  client->channel_ = grpc::CreateCustomChannel(ChannelTarget(endpoints), credentials, args);
  client->kv_ = etcdserverpb::KV::NewStub(client->channel_);
  client->watch_ = etcdserverpb::Watch::NewStub(client->channel_);
  client->lease_ = etcdserverpb::Lease::NewStub(client->channel_);
  client->auth_ = etcdserverpb::Auth::NewStub(client->channel_);
  for (const Endpoint& e : endpoints) {
    grpc::ChannelArguments single = args;
    if (tls) single.SetSslTargetNameOverride(e.host);
    client->endpoint_maintenance_.push_back(etcdserverpb::Maintenance::NewStub(
        grpc::CreateCustomChannel(ChannelTarget({e}), credentials, single)));
  }
  return client;
}

RpcClient::~RpcClient() { Shutdown(); }

bool RpcClient::Register(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> guard(calls_mu_);
  if (shutdown_) return false;
  in_flight_.insert(context);
  ++live_contexts_;
  return true;
}

void RpcClient::Unregister(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> guard(calls_mu_);
  in_flight_.erase(context);
}

void RpcClient::Release() {
  std::lock_guard<std::mutex> guard(calls_mu_);
  --live_contexts_;
  calls_cv_.notify_all();
}

void RpcClient::Shutdown() {
  std::unique_lock<std::mutex> lock(calls_mu_);
  shutdown_ = true;
  for (grpc::ClientContext* context : in_flight_) context->TryCancel();
  calls_cv_.wait(lock, [&] { return live_contexts_ == 0; });
}

void RpcClient::PrepareContext(grpc::ClientContext* context, const Context& ctx,
                               const std::string& token,
                               std::chrono::steady_clock::time_point deadline) {
  auto now = std::chrono::steady_clock::now();
  if (std::optional<std::chrono::steady_clock::time_point> d = ctx.Deadline(); d && *d < deadline) {
    deadline = *d;
  }
  context->set_deadline(std::chrono::system_clock::now() + (deadline - now));
  if (!token.empty()) context->AddMetadata("token", token);
}

bool IsNotConnectedError(const grpc::Status& status) {
  // What gRPC answers when no connection could be picked: the request never left.
  return status.error_code() == grpc::StatusCode::UNAVAILABLE &&
         !absl::StrContains(status.error_message(), "etcdserver:") &&
         (absl::StrContains(status.error_message(), "failed to connect to all addresses") ||
          absl::StrContains(status.error_message(), "connections to all backends failing") ||
          absl::StrContains(status.error_message(), "no children to pick from") ||
          absl::StrContains(status.error_message(), "empty address list"));
}

absl::Status RpcClient::Translate(const grpc::Status& status, std::string_view what,
                                  const grpc::ClientContext& context, const Context& ctx) const {
  if (status.ok()) return absl::OkStatus();
  auto code = static_cast<absl::StatusCode>(status.error_code());
  if (ctx.Done() &&
      (code == absl::StatusCode::kCancelled || code == absl::StatusCode::kDeadlineExceeded)) {
    absl::Status err = ctx.Err();
    return absl::Status(err.code(), absl::StrCat("etcd ", ToAbsl(what), ": ", err.message()));
  }
  std::string peer = PeerOf(context);
  if (peer.empty()) peer = endpoint_list_;
  std::string message = status.error_message();
  if (absl::StrContains(message, "request is too large")) {
    code = absl::StatusCode::kResourceExhausted;
  }
  if (code == absl::StatusCode::kDeadlineExceeded) {
    message = absl::StrCat("no answer within the request timeout of ", request_timeout_.count(),
                           " ms (", message, ")");
  }
  if (code == absl::StatusCode::kCancelled) {
    std::lock_guard<std::mutex> guard(calls_mu_);
    if (shutdown_) {
      code = absl::StatusCode::kFailedPrecondition;
      message = "etcd backend is closed";
    }
  }
  return absl::Status(code, absl::StrCat("etcd ", ToAbsl(what), " at ", peer, ": ", message));
}

absl::StatusOr<std::string> RpcClient::Token(const Context& ctx) {
  if (username_.empty()) return std::string();
  std::unique_lock<std::mutex> lock(auth_mu_);
  while (true) {
    if (!token_.empty()) return token_;
    if (!authenticating_) break;
    if (!ctx.WaitOn(lock, auth_cv_, [&] { return !authenticating_; })) return ctx.Err();
  }
  authenticating_ = true;
  lock.unlock();
  etcdserverpb::AuthenticateRequest request;
  request.set_name(username_);
  request.set_password(password_);
  etcdserverpb::AuthenticateResponse response;
  absl::Status status = BlockingCall(
      ctx, absl::StrCat("authenticate as user '", username_, "'"), /*with_token=*/false,
      [&](grpc::ClientContext* context, std::function<void(grpc::Status)> done) {
        auth_->async()->Authenticate(context, &request, &response, std::move(done));
      });
  lock.lock();
  authenticating_ = false;
  auth_cv_.notify_all();
  if (!status.ok()) return status;
  token_ = response.token();
  return token_;
}

void RpcClient::InvalidateToken() {
  std::lock_guard<std::mutex> guard(auth_mu_);
  token_.clear();
}

absl::Status RpcClient::BlockingCall(
    const Context& ctx, std::string_view what, bool with_token,
    const std::function<void(grpc::ClientContext*, std::function<void(grpc::Status)>)>& start) {
  // Calls fail fast while no connection is ready, and are retried here until the deadline: the
  // caller then gets gRPC's reason (refused, TLS handshake failed, ...) rather than a bare
  // deadline. Only failures before the request left are retried, so writes never run twice.
  const auto deadline = std::chrono::steady_clock::now() + request_timeout_;
  bool reauthenticated = false;
  absl::Status not_connected;  // the last reason why no connection was ready
  for (int attempt = 0;; ++attempt) {
    if (ctx.Done()) {
      return absl::Status(ctx.Err().code(),
                          absl::StrCat("etcd ", ToAbsl(what), ": ", ctx.Err().message()));
    }
    std::string token;
    if (with_token) {
      absl::StatusOr<std::string> t = Token(ctx);
      if (!t.ok()) return t.status();
      token = *t;
    }
    auto context = std::make_unique<grpc::ClientContext>();
    PrepareContext(context.get(), ctx, token, deadline);
    if (!Register(context.get())) return absl::FailedPreconditionError("etcd backend is closed");
    // Shared with the callback, which wakes the caller after releasing the lock (woken under
    // it, the caller would block on it again at once) and so must keep it alive meanwhile.
    struct Completion {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      grpc::Status result;
    };
    auto completion = std::make_shared<Completion>();
    start(context.get(), [completion](grpc::Status s) {
      {
        std::lock_guard<std::mutex> guard(completion->mu);
        completion->result = std::move(s);
        completion->done = true;
      }
      completion->cv.notify_all();
    });
    {
      ScopedContextCallback cancel(ctx, [&context] { context->TryCancel(); });
      std::unique_lock<std::mutex> lock(completion->mu);
      completion->cv.wait(lock, [&] { return completion->done; });
    }
    const grpc::Status& result = completion->result;
    Unregister(context.get());
    absl::Status status = Translate(result, what, *context, ctx);
    context.reset();
    Release();
    if (with_token && !username_.empty() && IsAuthTokenError(status)) {
      InvalidateToken();
      if (!reauthenticated) {
        reauthenticated = true;
        continue;
      }
    }
    const bool deadline_while_connecting =
        !not_connected.ok() && !ctx.Done() && status.code() == absl::StatusCode::kDeadlineExceeded;
    if (IsNotConnectedError(result)) not_connected = status;
    if (IsNotConnectedError(result) || deadline_while_connecting) {
      auto left = deadline - std::chrono::steady_clock::now();
      if (left > std::chrono::milliseconds(0)) {
        auto pause = std::min<std::chrono::steady_clock::duration>(
            left, std::chrono::milliseconds(std::min(50 * (attempt + 1), 500)));
        ctx.WaitFor(pause);  // when done, the context's error is reported at the top
        continue;
      }
      // Out of time: gRPC's last reason (refused, TLS handshake failed, ...) says more than the
      // deadline.
      return absl::Status(
          not_connected.code(),
          absl::StrCat(not_connected.message(), " (no connection within the request timeout of ",
                       request_timeout_.count(), " ms)"));
    }
    return status;
  }
}

absl::Status RpcClient::Range(const Context& ctx, std::string_view what,
                              const etcdserverpb::RangeRequest& request,
                              etcdserverpb::RangeResponse* response) {
  return BlockingCall(ctx, what, true, [&](grpc::ClientContext* c, auto done) {
    kv_->async()->Range(c, &request, response, std::move(done));
  });
}

absl::Status RpcClient::Put(const Context& ctx, std::string_view what,
                            const etcdserverpb::PutRequest& request,
                            etcdserverpb::PutResponse* response) {
  return BlockingCall(ctx, what, true, [&](grpc::ClientContext* c, auto done) {
    kv_->async()->Put(c, &request, response, std::move(done));
  });
}

absl::Status RpcClient::DeleteRange(const Context& ctx, std::string_view what,
                                    const etcdserverpb::DeleteRangeRequest& request,
                                    etcdserverpb::DeleteRangeResponse* response) {
  return BlockingCall(ctx, what, true, [&](grpc::ClientContext* c, auto done) {
    kv_->async()->DeleteRange(c, &request, response, std::move(done));
  });
}

absl::Status RpcClient::Txn(const Context& ctx, std::string_view what,
                            const etcdserverpb::TxnRequest& request,
                            etcdserverpb::TxnResponse* response) {
  return BlockingCall(ctx, what, true, [&](grpc::ClientContext* c, auto done) {
    kv_->async()->Txn(c, &request, response, std::move(done));
  });
}

absl::Status RpcClient::LeaseGrant(const Context& ctx,
                                   const etcdserverpb::LeaseGrantRequest& request,
                                   etcdserverpb::LeaseGrantResponse* response) {
  return BlockingCall(ctx, "lease grant", true, [&](grpc::ClientContext* c, auto done) {
    lease_->async()->LeaseGrant(c, &request, response, std::move(done));
  });
}

absl::Status RpcClient::LeaseRevoke(const Context& ctx,
                                    const etcdserverpb::LeaseRevokeRequest& request,
                                    etcdserverpb::LeaseRevokeResponse* response) {
  return BlockingCall(ctx, "lease revoke", true, [&](grpc::ClientContext* c, auto done) {
    lease_->async()->LeaseRevoke(c, &request, response, std::move(done));
  });
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
  absl::StatusOr<std::string> token = Token(Context());
  if (!token.ok()) {
    done(token.status(), call->response);
    return;
  }
  PrepareContext(&call->context, Context(), *token,
                 std::chrono::steady_clock::now() + request_timeout_);
  if (!Register(&call->context)) {
    done(absl::FailedPreconditionError("etcd backend is closed"), call->response);
    return;
  }
  // Only the callback owns the call: it destroys the ClientContext before Release (see there).
  Call* const c = call.get();
  kv_->async()->Range(&c->context, &c->request, &c->response,
                      [this, call = std::move(call), what = std::move(what),
                       done = std::move(done)](grpc::Status s) mutable {
                        absl::Status status = Translate(s, what, call->context, Context());
                        if (!username_.empty() && IsAuthTokenError(status)) InvalidateToken();
                        done(status, call->response);
                        done = nullptr;
                        Unregister(&call->context);
                        call.reset();
                        Release();
                      });
}

std::vector<RpcClient::EndpointStatus> RpcClient::StatusOfEndpoints(
    std::chrono::milliseconds timeout) {
  struct Call {
    grpc::ClientContext context;
    etcdserverpb::StatusRequest request;
  };
  std::vector<EndpointStatus> results(endpoint_maintenance_.size());
  std::vector<Call> calls(endpoint_maintenance_.size());
  std::mutex mu;
  std::condition_variable cv;
  size_t remaining = 0;
  size_t registered = 0;  // contexts to Release once destroyed
  std::string token;
  {
    std::lock_guard<std::mutex> guard(auth_mu_);
    token = token_;
  }
  auto deadline = std::chrono::system_clock::now() + timeout;
  for (size_t i = 0; i < calls.size(); ++i) {
    results[i].endpoint = endpoint_addresses_[i];
    calls[i].context.set_deadline(deadline);
    if (!token.empty()) calls[i].context.AddMetadata("token", token);
    if (!Register(&calls[i].context)) {
      results[i].status = absl::FailedPreconditionError("etcd backend is closed");
      continue;
    }
    ++registered;
    {
      std::lock_guard<std::mutex> guard(mu);
      ++remaining;
    }
    endpoint_maintenance_[i]->async()->Status(
        &calls[i].context, &calls[i].request, &results[i].response, [&, i](grpc::Status s) {
          results[i].status = Translate(s, "status", calls[i].context, Context());
          Unregister(&calls[i].context);
          std::lock_guard<std::mutex> guard(mu);
          --remaining;
          cv.notify_all();
        });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return remaining == 0; });
  }
  calls.clear();
  for (size_t i = 0; i < registered; ++i) Release();
  return results;
}

absl::StatusOr<std::shared_ptr<WatchStream>> RpcClient::StartWatchStream(
    WatchStream::ReadHandler on_read, WatchStream::DoneHandler on_done) {
  return StartStream<WatchStream>("watch", std::move(on_read), std::move(on_done),
                                  [this](grpc::ClientContext* context, WatchStream* stream) {
                                    watch_->async()->Watch(context, stream);
                                  });
}

absl::StatusOr<std::shared_ptr<KeepAliveStream>> RpcClient::StartKeepAliveStream(
    KeepAliveStream::ReadHandler on_read, KeepAliveStream::DoneHandler on_done) {
  return StartStream<KeepAliveStream>(
      "lease keep-alive", std::move(on_read), std::move(on_done),
      [this](grpc::ClientContext* context, KeepAliveStream* stream) {
        lease_->async()->LeaseKeepAlive(context, stream);
      });
}

}  // namespace kvstore::etcd

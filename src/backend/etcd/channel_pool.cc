#include "backend/etcd/channel_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_join.h"
#include "core/backoff.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {
namespace {

constexpr auto kAvoidBase = std::chrono::milliseconds(1000);
constexpr auto kAvoidMax = std::chrono::milliseconds(30000);

std::string JoinAddresses(const std::vector<std::unique_ptr<ChannelPool::Member>>& members) {
  std::vector<std::string> addresses;
  for (const auto& m : members) addresses.push_back(m->address);
  return absl::StrJoin(addresses, ",");
}

}  // namespace

ChannelPool::Connection::Connection(std::shared_ptr<grpc::Channel> channel)
    : channel(std::move(channel)),
      kv(etcdserverpb::KV::NewStub(this->channel)),
      watch(etcdserverpb::Watch::NewStub(this->channel)),
      lease(etcdserverpb::Lease::NewStub(this->channel)),
      auth(etcdserverpb::Auth::NewStub(this->channel)),
      maintenance(etcdserverpb::Maintenance::NewStub(this->channel)) {}

ChannelPool::Member::Member(Endpoint endpoint, std::shared_ptr<Connection> connection,
                            bool authenticate)
    : endpoint(std::move(endpoint)),
      address(this->endpoint.Address()),
      token(authenticate),
      current_(std::move(connection)) {}

std::shared_ptr<ChannelPool::Connection> ChannelPool::Member::connection() const {
  MutexLock guard(mu_);
  return current_;
}

namespace {

std::vector<std::unique_ptr<ChannelPool::Member>> MakeMembers(
    const ChannelFactory& factory, const std::vector<Endpoint>& endpoints, bool authenticate) {
  std::vector<std::unique_ptr<ChannelPool::Member>> members;
  for (const Endpoint& e : endpoints) {
    members.push_back(std::make_unique<ChannelPool::Member>(
        e, std::make_shared<ChannelPool::Connection>(factory.NewChannel(e)), authenticate));
  }
  return members;
}

}  // namespace

ChannelPool::ChannelPool(std::unique_ptr<ChannelFactory> factory,
                         const std::vector<Endpoint>& endpoints, bool authenticate)
    : factory_(std::move(factory)),
      members_(MakeMembers(*factory_, endpoints, authenticate)),
      address_list_(JoinAddresses(members_)),
      health_(members_.size()) {}

void ChannelPool::FollowCertificateFiles() {
  if (factory_->CheckCertificateFiles()) {
    // Every TLS member gets a channel with the new files, asked to connect now. A member whose
    // previous new channel never connected gets this one instead.
    for (const auto& m : members_) {
      if (!factory_->UsesTls(m->endpoint)) continue;
      auto next = std::make_shared<Connection>(factory_->NewChannel(m->endpoint));
      next->channel->GetState(/*try_to_connect=*/true);
      MutexLock guard(m->mu_);
      if (!m->next_) pending_.fetch_add(1);
      m->next_ = std::move(next);
    }
  }
  if (pending_.load() == 0) return;
  for (const auto& m : members_) {
    MutexLock guard(m->mu_);
    if (!m->next_) continue;
    const grpc_connectivity_state next = m->next_->channel->GetState(/*try_to_connect=*/true);
    const grpc_connectivity_state now = m->current_->channel->GetState(/*try_to_connect=*/false);
    // Connected with the new files, or the old ones cannot connect (the server moved on first):
    // the new channel takes the next calls. The old one goes once what it carries has ended.
    if (next == GRPC_CHANNEL_READY || now == GRPC_CHANNEL_TRANSIENT_FAILURE ||
        now == GRPC_CHANNEL_SHUTDOWN || now == GRPC_CHANNEL_IDLE) {
      m->current_ = std::move(m->next_);
      m->next_.reset();
      pending_.fetch_sub(1);
      rotations_.fetch_add(1);
    }
  }
}

std::optional<size_t> ChannelPool::Pick(const std::vector<bool>& skip, const Context& ctx,
                                        std::chrono::steady_clock::time_point wait_until) {
  while (true) {
    bool connecting = false;
    std::optional<size_t> picked = TryPick(skip, &connecting);
    if (!connecting || std::chrono::steady_clock::now() >= wait_until) return picked;
    // Connections are being made: the first one up takes the call. Connecting takes a round trip
    // or two on a working member, so the polling is short and rare.
    if (ctx.WaitFor(kConnectPoll)) return picked;
  }
}

std::optional<size_t> ChannelPool::TryPick(const std::vector<bool>& skip, bool* connecting) {
  *connecting = false;
  FollowCertificateFiles();
  if (members_.size() == 1) {
    // The call itself waits for the one connection.
    return !skip.empty() && skip[0] ? std::nullopt : std::optional<size_t>(0);
  }
  Choice choice = PickNow(skip);
  *connecting = choice.rank == kConnecting;
  return choice.index;
}

ChannelPool::Choice ChannelPool::PickNow(const std::vector<bool>& skip) {
  const size_t n = members_.size();
  const auto now = std::chrono::steady_clock::now();
  MutexLock guard(mu_);
  const size_t start = next_++ % n;
  Choice best;
  for (size_t k = 0; k < n && best.rank != kConnected; ++k) {
    const size_t i = (start + k) % n;
    if (!skip.empty() && skip[i]) continue;
    // Asking for the state also makes an idle channel connect, so a member that came back is
    // connected again before it is needed.
    const grpc_connectivity_state state =
        members_[i]->connection()->channel->GetState(/*try_to_connect=*/true);
    Rank rank;
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      rank = kCannotConnect;
    } else if (health_[i].avoid_until > now) {
      rank = kFailedLately;
    } else {
      rank = state == GRPC_CHANNEL_READY ? kConnected : kConnecting;
    }
    if (rank < best.rank) best = Choice{i, rank};
  }
  return best;
}

void ChannelPool::Report(size_t index, bool failed) {
  if (members_.size() == 1) return;
  MutexLock guard(mu_);
  Health& h = health_[index];
  if (!failed) {
    h.failures = 0;
    h.avoid_until = {};
    return;
  }
  h.avoid_until =
      std::chrono::steady_clock::now() + internal::BackoffDelay(h.failures, kAvoidBase, kAvoidMax);
  h.failures = std::min(h.failures + 1, 16);
}

}  // namespace kvstore::etcd

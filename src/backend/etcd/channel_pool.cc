#include "backend/etcd/channel_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_join.h"
#include "core/backoff.h"

namespace kvstore::etcd {
namespace {

constexpr auto kAvoidBase = std::chrono::milliseconds(1000);
constexpr auto kAvoidMax = std::chrono::milliseconds(30000);
constexpr auto kConnectPoll = std::chrono::milliseconds(5);

std::string JoinAddresses(const std::vector<std::unique_ptr<ChannelPool::Member>>& members) {
  std::vector<std::string> addresses;
  for (const auto& m : members) addresses.push_back(m->address);
  return absl::StrJoin(addresses, ",");
}

}  // namespace

ChannelPool::Member::Member(Endpoint endpoint, std::shared_ptr<grpc::Channel> channel,
                            bool authenticate)
    : endpoint(std::move(endpoint)),
      address(this->endpoint.Address()),
      channel(std::move(channel)),
      kv(etcdserverpb::KV::NewStub(this->channel)),
      watch(etcdserverpb::Watch::NewStub(this->channel)),
      lease(etcdserverpb::Lease::NewStub(this->channel)),
      auth(etcdserverpb::Auth::NewStub(this->channel)),
      maintenance(etcdserverpb::Maintenance::NewStub(this->channel)),
      token(authenticate) {}

ChannelPool::ChannelPool(std::vector<std::unique_ptr<Member>> members)
    : members_(std::move(members)),
      address_list_(JoinAddresses(members_)),
      health_(members_.size()) {}

std::optional<size_t> ChannelPool::Pick(const std::vector<bool>& skip, const Context& ctx,
                                        std::chrono::steady_clock::time_point wait_until) {
  if (members_.size() == 1) {
    // The call itself waits for the one connection.
    return !skip.empty() && skip[0] ? std::nullopt : std::optional<size_t>(0);
  }
  while (true) {
    Choice choice = PickNow(skip);
    if (choice.rank != kConnecting || std::chrono::steady_clock::now() >= wait_until) {
      return choice.index;
    }
    // Connections are being made: the first one up takes the call. Connecting takes a round trip
    // or two on a working member, so the polling is short and rare.
    if (ctx.WaitFor(kConnectPoll)) return choice.index;
  }
}

ChannelPool::Choice ChannelPool::PickNow(const std::vector<bool>& skip) {
  const size_t n = members_.size();
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> guard(mu_);
  const size_t start = next_++ % n;
  Choice best;
  for (size_t k = 0; k < n && best.rank != kConnected; ++k) {
    const size_t i = (start + k) % n;
    if (!skip.empty() && skip[i]) continue;
    // Asking for the state also makes an idle channel connect, so a member that came back is
    // connected again before it is needed.
    const grpc_connectivity_state state = members_[i]->channel->GetState(/*try_to_connect=*/true);
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
  std::lock_guard<std::mutex> guard(mu_);
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

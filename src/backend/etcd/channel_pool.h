// One gRPC channel per configured endpoint, and the choice of the endpoint for the next call.
// A channel per endpoint lets each member's certificate be checked against that member's own host
// name (a single channel over all of them can only check one name), and lets a member that fails
// be avoided while the others carry the calls: unary calls and streams alike. When the TLS files
// change (ChannelFactory), each TLS member gets a new channel with them, which takes the new calls
// and streams once it is connected (or at once if the old one cannot connect any more): calls
// and streams under way finish on the old one, so a rotation fails no request.
#ifndef KVSTORE_BACKEND_ETCD_CHANNEL_POOL_H_
#define KVSTORE_BACKEND_ETCD_CHANNEL_POOL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "backend/etcd/auth_token.h"
#include "backend/etcd/channel_factory.h"
#include "backend/etcd/endpoint.h"
#include "kvstore/context.h"
#include "kvstore/mutex.h"
#include "rpc.grpc.pb.h"

namespace kvstore::etcd {

class ChannelPool {
 public:
  // A channel and the stubs over it. A call or stream keeps its channel alive by itself (its
  // ClientContext holds it): a connection need only outlive the start of what it carries.
  struct Connection {
    explicit Connection(std::shared_ptr<grpc::Channel> channel);

    const std::shared_ptr<grpc::Channel> channel;
    const std::unique_ptr<etcdserverpb::KV::Stub> kv;
    const std::unique_ptr<etcdserverpb::Watch::Stub> watch;
    const std::unique_ptr<etcdserverpb::Lease::Stub> lease;
    const std::unique_ptr<etcdserverpb::Auth::Stub> auth;
    const std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
  };

  // One endpoint: its connection and its login token.
  class Member {
   public:
    Member(Endpoint endpoint, std::shared_ptr<Connection> connection, bool authenticate);

    // The connection new calls and streams use.
    std::shared_ptr<Connection> connection() const;

    const Endpoint endpoint;
    const std::string address;  // endpoint.Address(), for messages
    AuthToken token;

   private:
    friend class ChannelPool;
    mutable Mutex mu_;
    std::shared_ptr<Connection> current_ ABSL_GUARDED_BY(mu_);
    // Made with newer certificate files, connecting; replaces current_ once connected.
    std::shared_ptr<Connection> next_ ABSL_GUARDED_BY(mu_);
  };

  // Makes a member per endpoint with `factory`'s channels. REQUIRES: `endpoints` is not empty.
  ChannelPool(std::unique_ptr<ChannelFactory> factory, const std::vector<Endpoint>& endpoints,
              bool authenticate);
  ChannelPool(const ChannelPool&) = delete;
  ChannelPool& operator=(const ChannelPool&) = delete;

  size_t size() const { return members_.size(); }
  Member& member(size_t index) { return *members_[index]; }
  const Member& member(size_t index) const { return *members_[index]; }

  // The member for the next call, among those whose `skip` entry is false (`skip` empty or of
  // size()): in turn among the connected ones that did not fail lately. When none is connected
  // but some are connecting (idle channels are asked to connect), waits until one is, up to
  // `wait_until` or until `ctx` is done, rather than send the call to a member that may never
  // answer the connection (paused, cut off). Failing those: one that failed lately; last, one
  // whose channel cannot connect now (its call fails fast with gRPC's reason). nullopt when every
  // member is skipped. Thread-safe.
  std::optional<size_t> Pick(const std::vector<bool>& skip, const Context& ctx,
                             std::chrono::steady_clock::time_point wait_until);
  // Pick without waiting: `*connecting` tells that the choice is a member still connecting while
  // none is connected; a caller that can wait picks again after kConnectPoll.
  std::optional<size_t> TryPick(const std::vector<bool>& skip, bool* connecting);
  static constexpr std::chrono::milliseconds kConnectPoll{5};
  // What a call on `index` showed: `failed` when the endpoint itself failed (unreachable, no
  // answer in time, no leader), which keeps the next calls away from it for a while, doubling
  // with each failure in a row (1 s up to 30 s); any answer from it ends that.
  void Report(size_t index, bool failed);

  // Joined addresses of every endpoint, for messages.
  const std::string& AddressList() const { return address_list_; }

  // How many times the members' channels were replaced after the TLS files changed.
  uint64_t rotations() const { return rotations_.load(); }

 private:
  // How suitable a member is now: lower is better.
  enum Rank { kConnected = 0, kConnecting = 1, kFailedLately = 2, kCannotConnect = 3, kNone = 4 };
  struct Choice {
    std::optional<size_t> index;
    Rank rank = kNone;
  };
  Choice PickNow(const std::vector<bool>& skip);
  // Looks for changed certificate files (ChannelFactory decides how often) and makes the new
  // channels; moves members to their new channel once it is connected, or once the old one
  // cannot connect. Cheap when nothing changed.
  void FollowCertificateFiles();

  const std::unique_ptr<ChannelFactory> factory_;
  struct Health {
    int failures = 0;  // in a row
    std::chrono::steady_clock::time_point avoid_until{};
  };

  const std::vector<std::unique_ptr<Member>> members_;
  std::atomic<int> pending_{0};  // members with a next_ connection
  std::atomic<uint64_t> rotations_{0};
  const std::string address_list_;
  Mutex mu_;  // guards the state below
  std::vector<Health> health_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;  // where the next turn starts
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_CHANNEL_POOL_H_

// The etcd calls that the watchers (WatchHub) and the session leases (LeaseManager) make: a small
// seam between them and gRPC, which tests replace with a fake that answers by hand.
#ifndef KVSTORE_BACKEND_ETCD_TRANSPORT_H_
#define KVSTORE_BACKEND_ETCD_TRANSPORT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/context.h"
#include "rpc.pb.h"

namespace kvstore::etcd {

// The writing side of an open bidirectional stream. Write and Cancel may be called from any
// thread, also after the stream ended (then they do nothing).
template <typename Request>
class RequestStream {
 public:
  virtual ~RequestStream() = default;
  // Queues `request`; requests are sent one at a time, in order.
  virtual void Write(Request request) = 0;
  // Ends the stream; its done handler runs once it has ended.
  virtual void Cancel() = 0;
  // Ends the stream because its member stopped answering on a connection that looks open (a
  // keep-alive or progress request went unanswered): besides Cancel, the member is avoided for
  // a while, as after a failed call, so that the next stream goes to another member.
  virtual void Abandon() { Cancel(); }
};

using WatchRequests = RequestStream<etcdserverpb::WatchRequest>;
using KeepAliveRequests = RequestStream<etcdserverpb::LeaseKeepAliveRequest>;

class Transport {
 public:
  template <typename Response>
  using Callback = std::function<void(const absl::Status& status, Response& response)>;
  // Handlers of a stream: each response as it arrives, and once, why the stream ended. Both run
  // on a transport thread and must not block.
  template <typename Response>
  using ReadHandler = std::function<void(Response& response)>;
  using DoneHandler = std::function<void(const absl::Status& status)>;

  virtual ~Transport() = default;

  // A Range whose answer `done` receives on a transport thread (it must not block). May block
  // briefly itself to log in, so it is called from a thread that may block.
  virtual void AsyncRange(std::string what, const etcdserverpb::RangeRequest& request,
                          Callback<etcdserverpb::RangeResponse> done) = 0;

  // Opens a Watch / LeaseKeepAlive stream (on whichever endpoint works). Fails, without calling
  // `on_done`, when it cannot start (logging in failed, shut down).
  virtual absl::StatusOr<std::shared_ptr<WatchRequests>> StartWatchStream(
      ReadHandler<etcdserverpb::WatchResponse> on_read, DoneHandler on_done) = 0;
  virtual absl::StatusOr<std::shared_ptr<KeepAliveRequests>> StartKeepAliveStream(
      ReadHandler<etcdserverpb::LeaseKeepAliveResponse> on_read, DoneHandler on_done) = 0;

  // Blocking lease calls, ending by the request timeout or when `ctx` is done.
  virtual absl::Status LeaseGrant(const Context& ctx,
                                  const etcdserverpb::LeaseGrantRequest& request,
                                  etcdserverpb::LeaseGrantResponse* response) = 0;
  virtual absl::Status LeaseRevoke(const Context& ctx,
                                   const etcdserverpb::LeaseRevokeRequest& request,
                                   etcdserverpb::LeaseRevokeResponse* response) = 0;

  // Forgets the authentication tokens (the server refused one on a stream), so that the next
  // call or stream logs in again.
  virtual void ForgetTokens() = 0;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_TRANSPORT_H_

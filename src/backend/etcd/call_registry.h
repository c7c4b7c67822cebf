// The calls and streams in flight on a client's channels, so that shutting the client down can
// cancel every one of them and wait until gRPC is done with each.
#ifndef KVSTORE_BACKEND_ETCD_CALL_REGISTRY_H_
#define KVSTORE_BACKEND_ETCD_CALL_REGISTRY_H_

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <set>

namespace kvstore::etcd {

// A call's life here: Register before it starts, Unregister once its completion ran,
// ContextDestroyed once its grpc::ClientContext is destroyed, as the call's very last use of the
// client. A ClientContext holds a reference to the channel, and the channel must not go on the
// thread that runs completions (with gRPC's callback API, dropping the last reference there made
// its completion queue shut itself down from its own thread: a double free). Shutdown waits for
// every ContextDestroyed, so the client's owner drops the last channel reference, on its own
// thread. Thread-safe.
class CallRegistry {
 public:
  CallRegistry() = default;
  CallRegistry(const CallRegistry&) = delete;
  CallRegistry& operator=(const CallRegistry&) = delete;

  // Adds a call about to start; false (the call must not start) once shut down.
  bool Register(grpc::ClientContext* context);
  void Unregister(grpc::ClientContext* context);
  // The call's grpc::ClientContext was destroyed (its last use of the client).
  void ContextDestroyed();

  // Cancels every registered call and waits until the context of each was destroyed. Later Register
  // calls fail. Idempotent. REQUIRES: not called from a completion.
  void Shutdown();
  bool shut_down() const;

 private:
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable released_;
  std::set<grpc::ClientContext*> in_flight_;
  size_t live_contexts_ = 0;  // registered and not yet released
  bool shut_down_ = false;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_CALL_REGISTRY_H_

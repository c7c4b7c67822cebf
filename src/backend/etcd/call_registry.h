// The calls and streams in flight on a client's channels, so that shutting the client down can
// cancel every one of them and wait until gRPC is done with each.
#ifndef KVSTORE_BACKEND_ETCD_CALL_REGISTRY_H_
#define KVSTORE_BACKEND_ETCD_CALL_REGISTRY_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <set>

#include "absl/base/thread_annotations.h"
#include "kvstore/mutex.h"

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
  mutable Mutex mu_;  // guards everything below
  CondVar released_;
  std::set<grpc::ClientContext*> in_flight_ ABSL_GUARDED_BY(mu_);
  size_t live_contexts_ ABSL_GUARDED_BY(mu_) = 0;  // registered and not yet released
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// Cancels one call (unary or stream) from any thread, but never while its headers may still be
// queued: gRPC 1.51 resets a call whose headers are still queued (grpc/grpc#38758), and a server
// that never saw the call (Go's HTTP/2 server, which etcd uses under TLS) takes that for a
// protocol error and closes the connection, failing every other call and stream on it. A Cancel
// takes effect at once after Started, or kGrace after the start; one that comes earlier waits
// for whichever is first, unless the call completed by then. Thread-safe.
class CallCanceller : public std::enable_shared_from_this<CallCanceller> {
 public:
  // Longer than queued headers wait to be written on a working connection; a call that waits for
  // its connection has no stream yet, and cancelling it is harmless.
  static constexpr std::chrono::milliseconds kGrace{50};

  // For a call on `context` starting now.
  static std::shared_ptr<CallCanceller> Start(grpc::ClientContext* context);

  void Cancel();
  // The call's headers were written (a stream's start completed; unary calls do not tell): a
  // Cancel waiting for them acts now, later ones at once.
  void Started();
  // The call completed: Cancel does nothing from now on. Before the context is destroyed.
  void Detach();

  // Use Start.
  CallCanceller(grpc::ClientContext* context, std::chrono::steady_clock::time_point start)
      : start_(start), context_(context) {}

 private:
  const std::chrono::steady_clock::time_point start_;
  Mutex mu_;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_);  // null once detached
  bool started_ ABSL_GUARDED_BY(mu_) = false;          // Started was called
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;          // a Cancel waits; a timer ends the wait
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_CALL_REGISTRY_H_

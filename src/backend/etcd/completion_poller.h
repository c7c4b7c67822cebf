// The completion queue every etcd call and stream of the process runs on, and the one thread that
// polls it. That thread reads the replies off the connections itself and runs their completions
// (and the streams' handlers), so a reply is not handed from one thread to another on its way.
// Nothing else polls the connections: with gRPC's callback API beside it, its threads read replies
// meant for the queue and handed them over (on 10 SharedStores, 12% more CPU), and the callback
// API alone hands every completion over once more. One queue for all clients, not one each: with
// a thread per client the threads woke one another (on 10 clients, twice the context switches).
#ifndef KVSTORE_BACKEND_ETCD_COMPLETION_POLLER_H_
#define KVSTORE_BACKEND_ETCD_COMPLETION_POLLER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

namespace kvstore::etcd {

class CompletionPoller {
 public:
  // What an operation started on the queue hands back once it finished: Proceed runs on the
  // poller's thread with gRPC's `ok`. The tag's owner keeps it alive until then.
  class Tag {
   public:
    virtual ~Tag() = default;
    virtual void Proceed(bool ok) = 0;
  };

  // The process's poller: made for the first client that asks, ended when the last one lets it
  // go. Thread-safe.
  static std::shared_ptr<CompletionPoller> Shared();

  CompletionPoller(const CompletionPoller&) = delete;
  CompletionPoller& operator=(const CompletionPoller&) = delete;
  // Shuts the queue down and joins the thread. REQUIRES: no call is in flight on the queue (each
  // client waits for its own calls before it lets the poller go), and not on the poller's thread.
  ~CompletionPoller();

  grpc::CompletionQueue* queue() { return &queue_; }

  // Whether the calling thread is a poller's: there, a blocking call would wait for itself.
  static bool OnPollerThread();

  // Call right before starting an operation whose tag the poller will run: orders what the
  // starting thread wrote before the tag's Proceed where the thread sanitizer can see it (gRPC
  // orders them too, but its synchronisation is not instrumented).
  static void HandOver() { handed_over_.fetch_add(1, std::memory_order_release); }

 private:
  CompletionPoller();
  void Run();

  static inline std::atomic<uint64_t> handed_over_{0};
  grpc::CompletionQueue queue_;
  std::thread thread_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_COMPLETION_POLLER_H_

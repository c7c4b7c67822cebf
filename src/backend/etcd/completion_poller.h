// The completion queue the etcd clients of the process send their asynchronous unary calls on
// (RpcClient::PutAsync and the like), and the one thread that polls it. That thread reads the replies off the connections itself and runs their
// completions, so a reply is not handed from one thread to another on its way (gRPC's callback
// API hands each completion over once more). One queue for all clients, not one each: every
// polling thread takes its turn at the connections, and with a thread per client the threads woke
// one another (on 10 clients, twice the context switches).
#ifndef KVSTORE_BACKEND_ETCD_COMPLETION_POLLER_H_
#define KVSTORE_BACKEND_ETCD_COMPLETION_POLLER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <thread>

namespace kvstore::etcd {

class CompletionPoller {
 public:
  // What a call started on the queue hands back once it finished: Proceed runs on the poller's
  // thread, then the tag is deleted.
  class Tag {
   public:
    virtual ~Tag() = default;
    virtual void Proceed() = 0;
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

 private:
  CompletionPoller();
  void Run();

  grpc::CompletionQueue queue_;
  std::thread thread_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_COMPLETION_POLLER_H_

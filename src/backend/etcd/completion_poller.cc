#include "backend/etcd/completion_poller.h"

#include <mutex>

#include "core/guarded.h"
#include "core/thread_name.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

std::shared_ptr<CompletionPoller> CompletionPoller::Shared() {
  static Mutex mu;
  static std::weak_ptr<CompletionPoller> shared ABSL_GUARDED_BY(mu);
  MutexLock guard(mu);
  std::shared_ptr<CompletionPoller> poller = shared.lock();
  if (!poller) {
    poller.reset(new CompletionPoller());
    shared = poller;
  }
  return poller;
}

CompletionPoller::CompletionPoller() : thread_([this] { Run(); }) {}

CompletionPoller::~CompletionPoller() {
  queue_.Shutdown();
  thread_.join();
}

namespace {
thread_local bool on_poller_thread = false;
}  // namespace

bool CompletionPoller::OnPollerThread() { return on_poller_thread; }

void CompletionPoller::Run() {
  internal::NameThisThread("kv-grpc-poller");
  on_poller_thread = true;
  void* tag = nullptr;
  bool ok = false;
  while (queue_.Next(&tag, &ok)) {
    handed_over_.load(std::memory_order_acquire);  // see HandOver
    // A completion that threw is logged and the poller goes on with the others: ending its
    // thread would leave every call of the process without its completion.
    internal::RunGuarded("a completion on the etcd poller",
                         [tag, ok] { static_cast<Tag*>(tag)->Proceed(ok); });
  }
}

}  // namespace kvstore::etcd

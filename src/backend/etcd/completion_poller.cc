#include "backend/etcd/completion_poller.h"

#include <mutex>

namespace kvstore::etcd {

std::shared_ptr<CompletionPoller> CompletionPoller::Shared() {
  static std::mutex mu;
  static std::weak_ptr<CompletionPoller> shared;
  std::lock_guard<std::mutex> guard(mu);
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

void CompletionPoller::Run() {
  void* tag = nullptr;
  bool ok = false;
  while (queue_.Next(&tag, &ok)) {
    // A unary call's Finish always comes back, `ok` or not; its status tells what happened.
    std::unique_ptr<Tag>(static_cast<Tag*>(tag))->Proceed();
  }
}

}  // namespace kvstore::etcd

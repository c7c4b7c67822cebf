#include "backend/etcd/call_registry.h"

#include "kvstore/clock.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

bool CallRegistry::Register(grpc::ClientContext* context) {
  MutexLock guard(mu_);
  if (shut_down_) return false;
  in_flight_.insert(context);
  ++live_contexts_;
  return true;
}

void CallRegistry::Unregister(grpc::ClientContext* context) {
  MutexLock guard(mu_);
  in_flight_.erase(context);
}

void CallRegistry::ContextDestroyed() {
  MutexLock guard(mu_);
  --live_contexts_;
  released_.notify_all();
}

void CallRegistry::Shutdown() {
  MutexLock lock(mu_);
  shut_down_ = true;
  for (grpc::ClientContext* context : in_flight_) context->TryCancel();
  released_.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_contexts_ == 0; });
}

bool CallRegistry::shut_down() const {
  MutexLock guard(mu_);
  return shut_down_;
}

std::shared_ptr<CallCanceller> CallCanceller::Start(grpc::ClientContext* context) {
  return std::make_shared<CallCanceller>(context, std::chrono::steady_clock::now());
}

void CallCanceller::Cancel() {
  MutexLock guard(mu_);
  if (context_ == nullptr) return;
  const auto since_start = std::chrono::steady_clock::now() - start_;
  if (started_ || since_start >= kGrace) {
    context_->TryCancel();  // under mu_: Detach waits for it
    return;
  }
  if (waiting_) return;
  waiting_ = true;
  SystemClock()->AfterFunc(kGrace - since_start, [weak = weak_from_this()] {
    if (std::shared_ptr<CallCanceller> self = weak.lock()) self->Cancel();
  });
}

void CallCanceller::Started() {
  MutexLock guard(mu_);
  started_ = true;
  if (waiting_ && context_ != nullptr) context_->TryCancel();
}

void CallCanceller::Detach() {
  MutexLock guard(mu_);
  context_ = nullptr;
}

}  // namespace kvstore::etcd

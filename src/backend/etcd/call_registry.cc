#include "backend/etcd/call_registry.h"

namespace kvstore::etcd {

bool CallRegistry::Register(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> guard(mu_);
  if (shut_down_) return false;
  in_flight_.insert(context);
  ++live_contexts_;
  return true;
}

void CallRegistry::Unregister(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> guard(mu_);
  in_flight_.erase(context);
}

void CallRegistry::ContextDestroyed() {
  std::lock_guard<std::mutex> guard(mu_);
  --live_contexts_;
  released_.notify_all();
}

void CallRegistry::Shutdown() {
  std::unique_lock<std::mutex> lock(mu_);
  shut_down_ = true;
  for (grpc::ClientContext* context : in_flight_) context->TryCancel();
  released_.wait(lock, [&] { return live_contexts_ == 0; });
}

bool CallRegistry::shut_down() const {
  std::lock_guard<std::mutex> guard(mu_);
  return shut_down_;
}

}  // namespace kvstore::etcd

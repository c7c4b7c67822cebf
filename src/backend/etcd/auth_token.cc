#include "backend/etcd/auth_token.h"

#include "kvstore/mutex.h"

namespace kvstore::etcd {

absl::StatusOr<std::string> AuthToken::Get(const Context& ctx, const Login& login) {
  if (!enabled_) return std::string();
  MutexLock lock(mu_);
  while (true) {
    if (!token_.empty()) return token_;
    if (!logging_in_) break;
    if (!ctx.WaitOn(lock, login_done_,
                    [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !logging_in_; }))
      return ctx.Err();
  }
  logging_in_ = true;
  lock.unlock();
  absl::StatusOr<std::string> token = login(ctx);
  lock.lock();
  logging_in_ = false;
  if (token.ok()) token_ = *token;
  lock.unlock();
  login_done_.notify_all();
  return token;
}

std::string AuthToken::Current() const {
  MutexLock guard(mu_);
  return token_;
}

void AuthToken::Invalidate() {
  MutexLock guard(mu_);
  token_.clear();
}

}  // namespace kvstore::etcd

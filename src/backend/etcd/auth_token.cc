#include "backend/etcd/auth_token.h"

namespace kvstore::etcd {

void AuthToken::Get(const Login& login, Done done) {
  if (!enabled_) return done(Result(std::string()));
  std::string token;
  {
    MutexLock guard(mu_);
    if (token_.empty()) {
      waiting_.push_back(std::move(done));
      if (logging_in_) return;
      logging_in_ = true;
    } else {
      token = token_;
    }
  }
  if (!token.empty()) return done(Result(std::move(token)));
  login([this](const Result& result) { LoginDone(result); });
}

void AuthToken::LoginDone(const Result& result) {
  std::vector<Done> waiting;
  {
    MutexLock guard(mu_);
    logging_in_ = false;
    if (result.token.ok()) token_ = *result.token;
    waiting.swap(waiting_);
  }
  for (Done& done : waiting) done(result);
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

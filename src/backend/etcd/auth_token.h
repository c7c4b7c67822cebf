// The etcd authentication token of one endpoint. etcd's default "simple" tokens are valid only on
// the member that issued them, so each endpoint logs in for itself; one login at a time, the
// others wait for its token.
#ifndef KVSTORE_BACKEND_ETCD_AUTH_TOKEN_H_
#define KVSTORE_BACKEND_ETCD_AUTH_TOKEN_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "kvstore/context.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

class AuthToken {
 public:
  // Logs in and returns the new token.
  using Login = std::function<absl::StatusOr<std::string>(const Context& ctx)>;

  // Without authentication (`enabled` false) every token is empty and nobody logs in.
  explicit AuthToken(bool enabled) : enabled_(enabled) {}
  AuthToken(const AuthToken&) = delete;
  AuthToken& operator=(const AuthToken&) = delete;

  bool enabled() const { return enabled_; }

  // The token to send: the one held, else the result of `login` (run by this caller, or by
  // another caller that is logging in already). Fails with login's error or the context's.
  absl::StatusOr<std::string> Get(const Context& ctx, const Login& login);
  // The token held now, without logging in (empty when none).
  std::string Current() const;
  // Forgets the token (the server refused it), so that the next Get logs in again.
  void Invalidate();

 private:
  const bool enabled_;
  mutable Mutex mu_;  // guards the state below
  CondVar login_done_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  bool logging_in_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_AUTH_TOKEN_H_

// The etcd authentication token of one endpoint. etcd's default "simple" tokens are valid only on
// the member that issued them, so each endpoint logs in for itself; one login at a time, the
// others wait for its token.
#ifndef KVSTORE_BACKEND_ETCD_AUTH_TOKEN_H_
#define KVSTORE_BACKEND_ETCD_AUTH_TOKEN_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

class AuthToken {
 public:
  // What a login gave: the token, or why not; `not_sent` when the member had no connection to
  // send it on (another member may be tried).
  struct Result {
    Result(absl::StatusOr<std::string> token, bool not_sent = false)  // NOLINT: implicit
        : token(std::move(token)), not_sent(not_sent) {}
    absl::StatusOr<std::string> token;
    bool not_sent = false;
  };
  using Done = std::function<void(const Result& result)>;
  // Logs in, without blocking; runs its argument once with the result.
  using Login = std::function<void(Done done)>;

  // Without authentication (`enabled` false) every token is empty and nobody logs in.
  explicit AuthToken(bool enabled) : enabled_(enabled) {}
  AuthToken(const AuthToken&) = delete;
  AuthToken& operator=(const AuthToken&) = delete;

  bool enabled() const { return enabled_; }

  // Runs `done` with the token to send: the one held (at once, on this thread), else the result
  // of the login under way, or of the one `login` starts now. One login at a time; `done` runs
  // without this token's lock held.
  void Get(const Login& login, Done done);
  // The token held now, without logging in (empty when none).
  std::string Current() const;
  // Forgets the token (the server refused it), so that the next Get logs in again.
  void Invalidate();

 private:
  // Records the login's result and tells everyone who waited for it.
  void LoginDone(const Result& result);

  const bool enabled_;
  mutable Mutex mu_;  // guards the state below
  std::string token_ ABSL_GUARDED_BY(mu_);
  bool logging_in_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Done> waiting_ ABSL_GUARDED_BY(mu_);  // for the login under way
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_AUTH_TOKEN_H_

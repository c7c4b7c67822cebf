// A callback that runs exactly once: the asynchronous calls' and the backend's completions.
#ifndef KVSTORE_BACKEND_ETCD_COMPLETION_H_
#define KVSTORE_BACKEND_ETCD_COMPLETION_H_

#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"

namespace kvstore::etcd {

// Runs `done` once, with the result given to operator(). Dropped before that (its task discarded
// by a closing executor, its call by a closing client), it reports that the backend closed:
// whoever waits for it always hears back. `Result` is constructible from an absl::Status.
template <typename Result>
class Completion {
 public:
  explicit Completion(std::function<void(Result)> done,
                      std::string closed_message = "etcd backend is closed")
      : done_(std::move(done)), closed_message_(std::move(closed_message)) {}
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;
  ~Completion() {
    if (done_) done_(Result(absl::FailedPreconditionError(closed_message_)));
  }

  void operator()(Result result) {
    std::function<void(Result)> done = std::move(done_);
    done_ = nullptr;
    done(std::move(result));
  }

 private:
  std::function<void(Result)> done_;  // null once run
  const std::string closed_message_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_COMPLETION_H_

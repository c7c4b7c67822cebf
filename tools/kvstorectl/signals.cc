#include "signals.h"

#include <pthread.h>

namespace kvstorectl {

SignalContext::SignalContext() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  auto [ctx, cancel] = kvstore::WithCancel(kvstore::Context::Background());
  ctx_ = ctx;
  cancel_ = cancel;
  waiter_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvctl-signals");
    int signal_number = 0;
    // One signal ends the wait: the user's (which cancels) or the destructor's.
    if (sigwait(&signals_, &signal_number) == 0 && !stopping_.load()) cancel_();
  });
}

SignalContext::~SignalContext() {
  stopping_.store(true);
  // A signal sent to the waiter alone (blocked there, so sigwait takes it) ends its wait; once
  // it ended by itself, the signal is discarded.
  pthread_kill(waiter_.native_handle(), SIGTERM);
  waiter_.join();
}

}  // namespace kvstorectl

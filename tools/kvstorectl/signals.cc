#include "signals.h"

#include <pthread.h>
#include <signal.h>

#include <thread>

namespace kvstorectl {

kvstore::Context InstallSignalContext() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto [ctx, cancel] = kvstore::WithCancel(kvstore::Context::Background());
  // The waiter lives as long as the process: nothing else could receive the signals it handles.
  std::thread([set, cancel = cancel] {
    int signal_number = 0;
    if (sigwait(&set, &signal_number) == 0) cancel();
  }).detach();
  return ctx;
}

}  // namespace kvstorectl

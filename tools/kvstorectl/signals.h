// A context that ends on SIGINT or SIGTERM, for commands that run until the user stops them.
#ifndef KVSTORE_TOOLS_KVSTORECTL_SIGNALS_H_
#define KVSTORE_TOOLS_KVSTORECTL_SIGNALS_H_

#include <signal.h>

#include <atomic>
#include <thread>

#include "kvstore/context.h"

namespace kvstorectl {

// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread started after it) and
// runs a thread, owned by this object, that cancels ctx() when one of them arrives. Make one,
// early in main, before any other thread exists; destroying it stops and joins the thread.
class SignalContext {
 public:
  SignalContext();
  SignalContext(const SignalContext&) = delete;
  SignalContext& operator=(const SignalContext&) = delete;
  ~SignalContext();

  const kvstore::Context& ctx() const { return ctx_; }

 private:
  sigset_t signals_;
  kvstore::Context ctx_;
  kvstore::CancelFunc cancel_;
  std::atomic<bool> stopping_{false};  // the destructor woke the waiter, not a user's signal
  std::thread waiter_;
};

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_SIGNALS_H_

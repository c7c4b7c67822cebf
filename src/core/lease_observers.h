// The lease-expired observer registry shared by the backends.
#ifndef KVSTORE_CORE_LEASE_OBSERVERS_H_
#define KVSTORE_CORE_LEASE_OBSERVERS_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kvstore/mutex.h"

namespace kvstore::internal {

// The lease-expired observers of one backend instance (Backend::RegisterLeaseExpiredObserver),
// for both backends: the instance registers them, whoever learns that a lease was lost dispatches
// its keys. A prefix matches a key by bytes (std::string_view::starts_with), as in Cilium: the
// observer of "a/b" also sees "a/bc". Thread-safe.
class LeaseObservers {
 public:
  using Fn = std::function<void(std::string_view key)>;

  LeaseObservers() = default;
  LeaseObservers(const LeaseObservers&) = delete;
  LeaseObservers& operator=(const LeaseObservers&) = delete;

  // One observer per prefix; a null `fn` removes it. Once this returns, a replaced or removed
  // observer is not running and will not run again (unless this is called from an observer).
  void Register(std::string_view prefix, Fn fn);
  // Calls every observer whose prefix matches, once per key, in order, on this thread. Dispatches
  // are serialised. What an observer throws is logged and counted (core/guarded.h), and the
  // dispatch goes on. Observers must not block: call this where a slow one stalls no event
  // delivery, without any lock held that an observer might take.
  void Dispatch(const std::vector<std::string>& keys);
  // No more calls after this (the instance was closed). Waits for a running dispatch unless
  // called from an observer.
  void Disable();

 private:
  bool Disabled();

  Mutex mu_;  // guards observers_ and disabled_
  std::map<std::string, std::shared_ptr<Fn>, std::less<>> observers_ ABSL_GUARDED_BY(mu_);
  bool disabled_ ABSL_GUARDED_BY(mu_) = false;
  Mutex dispatch_mu_;                                     // held while observers run
  std::thread::id dispatch_thread_ ABSL_GUARDED_BY(mu_);  // the thread holding dispatch_mu_, if any
};

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_LEASE_OBSERVERS_H_

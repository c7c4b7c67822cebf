#include "core/lease_observers.h"

#include "absl/cleanup/cleanup.h"
#include "core/guarded.h"
#include "kvstore/mutex.h"

namespace kvstore::internal {

void LeaseObservers::Register(std::string_view prefix, Fn fn) {
  std::shared_ptr<Fn> previous;  // destroyed after the locks are released
  bool wait_for_dispatch = false;
  {
    MutexLock lock(mu_);
    auto it = observers_.find(prefix);
    if (it != observers_.end()) {
      previous = std::move(it->second);
      observers_.erase(it);
    }
    if (fn) observers_.emplace(std::string(prefix), std::make_shared<Fn>(std::move(fn)));
    wait_for_dispatch = previous != nullptr && dispatch_thread_ != std::this_thread::get_id();
  }
  // A dispatch running on another thread may be inside the previous observer; once it ends, the
  // previous observer can never be called again (dispatches look observers up per key).
  if (wait_for_dispatch) MutexLock wait(dispatch_mu_);
}

void LeaseObservers::Dispatch(const std::vector<std::string>& keys) {
  MutexLock dispatch_lock(dispatch_mu_);
  {
    MutexLock lock(mu_);
    dispatch_thread_ = std::this_thread::get_id();
  }
  absl::Cleanup clear_thread = [this] {
    MutexLock lock(mu_);
    dispatch_thread_ = std::thread::id();
  };
  for (const std::string& key : keys) {
    std::vector<std::shared_ptr<Fn>> matching;
    {
      MutexLock lock(mu_);
      if (disabled_) return;
      for (const auto& [prefix, fn] : observers_) {
        if (key.starts_with(prefix)) matching.push_back(fn);
      }
    }
    for (const auto& fn : matching) {
      // An observer may close the instance (Disable) while others for this key are still due.
      if (Disabled()) return;
      // One observer that throws is logged and counted here: the exception would otherwise skip
      // every observer and key after it, of other stores and instances too (the in-memory server
      // dispatches several sessions' keys in a row), and end up in whatever call found the
      // lease expired.
      RunGuarded("a lease-expired observer", [&fn, &key] { (*fn)(key); });
    }
  }
}

bool LeaseObservers::Disabled() {
  MutexLock lock(mu_);
  return disabled_;
}

void LeaseObservers::Disable() {
  std::map<std::string, std::shared_ptr<Fn>, std::less<>> dropped;  // destroyed without mu_ held
  bool wait_for_dispatch = false;
  {
    MutexLock lock(mu_);
    disabled_ = true;
    dropped.swap(observers_);
    wait_for_dispatch = dispatch_thread_ != std::this_thread::get_id();
  }
  // A running dispatch stops at its next key; wait for it to leave the observer it is in.
  if (wait_for_dispatch) MutexLock wait(dispatch_mu_);
}

}  // namespace kvstore::internal

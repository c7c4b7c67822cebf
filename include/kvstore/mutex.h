// A std::mutex, a std::shared_mutex, scoped locks and a condition variable that clang's
// thread-safety analysis
// (-Wthread-safety, `make thread-safety`) understands: libstdc++'s std::mutex is not annotated as
// a capability, so ABSL_GUARDED_BY(a std::mutex) cannot be checked.
//
// Why not absl::Mutex: Debian's abseil is not built with ThreadSanitizer, so TSan (make test-tsan)
// cannot see an absl::Mutex order anything and reports the fields it guards as races; and
// Debian's abseil leaves absl::Mutex's deadlock detection on (a process-wide lock graph updated
// on every lock). These wrappers are std::mutex and std::condition_variable underneath (the same
// size and layout, so a class's private members can switch to them), which TSan sees through
// pthreads.
//
// Internal to kvstore: used for the private state of the public headers' classes, not an API.
#ifndef KVSTORE_MUTEX_H_
#define KVSTORE_MUTEX_H_

#include <cassert>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "absl/base/thread_annotations.h"

namespace kvstore {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // Tells the analysis that the caller holds this mutex (checked by nothing at run time): for
  // code it cannot follow, such as a callback run under the lock.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

  // The std::mutex underneath, for the APIs that take one (Clock::WaitUntil, Context::WaitOn).
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

// Holds `mu` from construction to destruction, unless unlocked (and locked again) in between.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : lock_(mu.native()) {}
  ~MutexLock() ABSL_UNLOCK_FUNCTION() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() ABSL_UNLOCK_FUNCTION() { lock_.unlock(); }
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { lock_.lock(); }
  // unlock(), in a function handed its caller's lock, which holds `mu`, and declared
  // ABSL_UNLOCK_FUNCTION(mu): the analysis cannot tell which mutex a MutexLock& parameter holds.
  void unlock(Mutex& mu) ABSL_UNLOCK_FUNCTION(mu) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    assert(lock_.mutex() == &mu.native());
    (void)mu;
    lock_.unlock();
  }

  // The std::unique_lock underneath, for Clock::WaitUntil and Context::WaitOn. It stays locked
  // across those calls (they may unlock it while they wait, and lock it again before returning).
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

// A std::shared_mutex: held exclusively through WriterMutexLock, shared through ReaderMutexLock.
class ABSL_LOCKABLE SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  void lock_shared() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void unlock_shared() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class ABSL_SCOPED_LOCKABLE WriterMutexLock {
 public:
  explicit WriterMutexLock(SharedMutex& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_.lock();
  }
  ~WriterMutexLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  WriterMutexLock(const WriterMutexLock&) = delete;
  WriterMutexLock& operator=(const WriterMutexLock&) = delete;

 private:
  SharedMutex& mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(SharedMutex& mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_.lock_shared();
  }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  SharedMutex& mu_;
};

// A std::condition_variable waited on through a MutexLock. A predicate that reads guarded fields
// says so: [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ready_; }.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

  void wait(MutexLock& lock) { cv_.wait(lock.native()); }
  template <typename Predicate>
  void wait(MutexLock& lock, Predicate pred) {
    cv_.wait(lock.native(), std::move(pred));
  }
  template <typename ClockT, typename Duration>
  std::cv_status wait_until(MutexLock& lock,
                            const std::chrono::time_point<ClockT, Duration>& deadline) {
    return cv_.wait_until(lock.native(), deadline);
  }
  template <typename ClockT, typename Duration, typename Predicate>
  bool wait_until(MutexLock& lock, const std::chrono::time_point<ClockT, Duration>& deadline,
                  Predicate pred) {
    return cv_.wait_until(lock.native(), deadline, std::move(pred));
  }
  template <typename Rep, typename Period>
  std::cv_status wait_for(MutexLock& lock, const std::chrono::duration<Rep, Period>& d) {
    return cv_.wait_for(lock.native(), d);
  }
  template <typename Rep, typename Period, typename Predicate>
  bool wait_for(MutexLock& lock, const std::chrono::duration<Rep, Period>& d, Predicate pred) {
    return cv_.wait_for(lock.native(), d, std::move(pred));
  }

  // The std::condition_variable underneath, for Clock::WaitUntil and Context::WaitOn.
  std::condition_variable& native() { return cv_; }

 private:
  std::condition_variable cv_;
};

}  // namespace kvstore

#endif  // KVSTORE_MUTEX_H_

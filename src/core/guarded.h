// What the library's own threads do with an exception thrown by the work they run (a task posted
// to an executor or strand, a timer's function, a completion of the etcd poller): it is caught
// there, logged with where it was caught, and counted, so that it never reaches std::terminate
// through a thread the user did not start, and never leaves the component that ran the work in a
// state it cannot leave (a strand still marked busy, an etcd executor still counting the task as
// running). Private to the library.
#ifndef KVSTORE_CORE_GUARDED_H_
#define KVSTORE_CORE_GUARDED_H_

#include <cstdint>
#include <functional>

namespace kvstore::internal {

// Runs `fn`; if it throws, logs "exception escaped <where>: <what>" at error level and counts it
// (CaughtExceptions). Never throws.
void RunGuarded(const char* where, const std::function<void()>& fn) noexcept;

// The same report for the exception being handled; call only inside a catch block (for code that
// cannot hand a std::function over, such as a coroutine).
void ReportCurrentException(const char* where) noexcept;

// Exceptions RunGuarded and ReportCurrentException caught in this process so far.
uint64_t CaughtExceptions();

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_GUARDED_H_

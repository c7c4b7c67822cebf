// Blocking calls that wait for tasks of a ManualExecutor (SharedStore's Join, Mesh::Run,
// RemoveCluster): made on a second thread while the test's thread runs the executor's tasks.
#ifndef KVSTORE_TESTS_SUPPORT_WHILE_RUNNING_H_
#define KVSTORE_TESTS_SUPPORT_WHILE_RUNNING_H_

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "gtest/gtest.h"
#include "kvstore/executor.h"
#include "tests/support/eventually.h"

namespace kvstore::testing {

// Runs `call` on a second thread while this thread runs `executor`'s tasks as they come
// (ManualExecutor::RunOneOrWait: no polling), until `call` returned; returns what it returned.
// A call still blocked after kEventuallyTimeout is reported as a failure (and waited for).
template <typename Fn>
auto WhileRunning(ManualExecutor& executor, Fn call) -> std::invoke_result_t<Fn&> {
  using Result = std::invoke_result_t<Fn&>;
  std::atomic<bool> returned{false};
  std::optional<std::conditional_t<std::is_void_v<Result>, bool, Result>> result;
  std::thread caller([&] {
    if constexpr (std::is_void_v<Result>) {
      call();
      result.emplace(true);
    } else {
      result.emplace(call());
    }
    returned = true;
    executor.Post([] {});  // wakes this thread's wait
  });
  auto deadline = std::chrono::steady_clock::now() + kEventuallyTimeout;
  while (!returned) {
    if (executor.RunOneOrWait(deadline) || returned) continue;
    ADD_FAILURE() << "the blocking call has not returned after " << kEventuallyTimeout.count()
                  << " s; waiting on";
    deadline = std::chrono::steady_clock::time_point::max();
  }
  caller.join();
  if constexpr (!std::is_void_v<Result>) return std::move(*result);
}

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_WHILE_RUNNING_H_

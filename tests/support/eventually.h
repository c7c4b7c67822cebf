// Polling with a deadline: how tests wait for something another thread does.
#ifndef KVSTORE_TESTS_SUPPORT_EVENTUALLY_H_
#define KVSTORE_TESTS_SUPPORT_EVENTUALLY_H_

#include <chrono>
#include <thread>

namespace kvstore::testing {

// Generous: only a broken implementation ever waits this long.
inline constexpr std::chrono::seconds kEventuallyTimeout{10};

// Returns true as soon as `condition()` holds, false if it still does not after `timeout`.
template <typename Condition>
bool Eventually(Condition condition,
                std::chrono::steady_clock::duration timeout = kEventuallyTimeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_EVENTUALLY_H_

// Polling with a deadline: how tests wait for something another thread does.
#ifndef KVSTORE_TESTS_SUPPORT_EVENTUALLY_H_
#define KVSTORE_TESTS_SUPPORT_EVENTUALLY_H_

#include <algorithm>
#include <chrono>
#include <thread>

namespace kvstore::testing {

// Generous: only a broken implementation (or a real cluster far slower than it should be) ever
// waits this long.
inline constexpr std::chrono::seconds kEventuallyTimeout{20};

// Returns true as soon as `condition()` holds, false if it still does not after `timeout`. Polls
// every millisecond at first, then less often (up to every 20 ms), so that a condition that asks
// a real etcd does not flood it.
template <typename Condition>
bool Eventually(Condition condition,
                std::chrono::steady_clock::duration timeout = kEventuallyTimeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_EVENTUALLY_H_

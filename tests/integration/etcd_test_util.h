// Helpers shared by the tests against a real etcd.
#ifndef KVSTORE_TESTS_INTEGRATION_ETCD_TEST_UTIL_H_
#define KVSTORE_TESTS_INTEGRATION_ETCD_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "kvstore/backend.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/events.h"
#include "tests/support/etcd_fixture.h"
#include "tests/support/eventually.h"

namespace kvstore::testing {

// A test suite whose tests share one single-member etcd, started before its first test and
// stopped after its last. Tests keep apart by key prefix.
class SharedEtcdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster).release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  static inline EtcdCluster* cluster_ = nullptr;
};

inline std::shared_ptr<Backend> MustConnect(const etcd::EtcdConfig& config) {
  absl::StatusOr<std::shared_ptr<Backend>> backend = etcd::NewEtcdBackend(config);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? *backend : nullptr;
}

// Retries `op` until it returns OK (a cluster in fail-over refuses writes for a while).
inline absl::Status Retry(const std::function<absl::Status()>& op,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  absl::Status status;
  kvstore::testing::Eventually(
      [&] {
        status = op();
        return status.ok();
      },
      timeout);
  return status;
}

// The consumer's view of a watch: applies events as a store would.
struct WatchView {
  std::map<std::string, std::string> keys;
  bool list_done = false;
  int list_done_count = 0;
  std::vector<KeyValueEvent> events;

  void Apply(const KeyValueEvent& ev) {
    events.push_back(ev);
    switch (ev.type) {
      case EventType::kCreate:
      case EventType::kModify:
        keys[ev.key] = ev.value;
        break;
      case EventType::kDelete:
        keys.erase(ev.key);
        break;
      case EventType::kListDone:
        list_done = true;
        ++list_done_count;
        break;
    }
  }

  // Reads events until `condition` holds on the view, or `timeout`.
  bool ReadUntil(Watcher& watcher, const std::function<bool(const WatchView&)>& condition,
                 std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition(*this)) {
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds::zero()) return false;
      std::optional<KeyValueEvent> ev = watcher.NextFor(left);
      if (!ev) return condition(*this);
      Apply(*ev);
    }
    return true;
  }
};

inline std::map<std::string, std::string> Plain(const KeyValuePairs& pairs) {
  std::map<std::string, std::string> plain;
  for (const auto& [key, value] : pairs) plain[key] = value.data;
  return plain;
}

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_INTEGRATION_ETCD_TEST_UTIL_H_

// A consumer of a Watcher for tests: keeps the consumer's view of the store and checks that every
// event is consistent with it. Shared by the conformance suite and backend-specific tests.
#ifndef KVSTORE_TESTS_BACKEND_CONFORMANCE_WATCH_TRACKER_H_
#define KVSTORE_TESTS_BACKEND_CONFORMANCE_WATCH_TRACKER_H_

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/watcher_producer.h"
#include "gtest/gtest.h"
#include "kvstore/events.h"

namespace kvstore::testing {

using StringMap = std::map<std::string, std::string>;

// Consumes a watcher and keeps the consumer's view of the store, checking that every event is
// consistent with it: kCreate only for a key the consumer does not know, kModify and kDelete only
// for keys it knows, one kListDone at most, every key under the watched prefix.
class WatchTracker {
 public:
  WatchTracker(std::shared_ptr<Watcher> watcher, std::string prefix)
      : watcher_(std::move(watcher)), prefix_(std::move(prefix)) {}

  // Reads one event, waiting up to `timeout`; nullopt on timeout or when closed.
  std::optional<KeyValueEvent> Read(std::chrono::milliseconds timeout) {
    auto event = watcher_->NextFor(timeout);
    if (event) Apply(*event);
    return event;
  }

  // Reads events until `pred()` holds; false if it still does not after `timeout`.
  template <typename Pred>
  bool ReadUntil(Pred pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline || internal::WatcherProducer(*watcher_).Closed()) return pred();
      Read(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
    }
    return true;
  }

  bool ReadUntilListDone(std::chrono::milliseconds timeout) {
    return ReadUntil([&] { return list_dones_ > 0; }, timeout);
  }
  bool ReadUntilView(const StringMap& expected, std::chrono::milliseconds timeout) {
    return ReadUntil([&] { return view_ == expected; }, timeout);
  }
  // Reads until the watcher is closed and drained.
  bool ReadUntilClosed(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!internal::WatcherProducer(*watcher_).Closed()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      Read(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
    }
    return true;
  }

  const StringMap& view() const { return view_; }
  const std::vector<KeyValueEvent>& events() const { return events_; }
  int list_dones() const { return list_dones_; }
  Watcher& watcher() { return *watcher_; }

 private:
  void Apply(const KeyValueEvent& event) {
    events_.push_back(event);
    if (event.type == EventType::kListDone) {
      ++list_dones_;
      EXPECT_EQ(list_dones_, 1) << "kListDone sent again";
      return;
    }
    EXPECT_TRUE(event.key.starts_with(prefix_))
        << "event for " << event.key << " outside " << prefix_;
    const bool known = view_.contains(event.key);
    switch (event.type) {
      case EventType::kCreate:
        EXPECT_FALSE(known) << "kCreate for a key the consumer knows: " << event.key;
        view_[event.key] = event.value;
        break;
      case EventType::kModify:
        EXPECT_TRUE(known) << "kModify for a key the consumer does not know: " << event.key;
        view_[event.key] = event.value;
        break;
      case EventType::kDelete:
        EXPECT_TRUE(known) << "kDelete for a key the consumer does not know: " << event.key;
        view_.erase(event.key);
        break;
      case EventType::kListDone:
        break;
    }
  }

  std::shared_ptr<Watcher> watcher_;
  std::string prefix_;
  StringMap view_;
  std::vector<KeyValueEvent> events_;
  int list_dones_ = 0;
};

// Waits until the watcher is closed (draining it); true if it closed within `timeout`.
inline bool ClosesWithin(Watcher& watcher, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!internal::WatcherProducer(watcher).Closed()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    watcher.NextFor(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
  }
  return true;
}

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_BACKEND_CONFORMANCE_WATCH_TRACKER_H_

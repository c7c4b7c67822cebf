// An Observer that records every call, in order.
#ifndef KVSTORE_TESTS_SUPPORT_RECORDING_OBSERVER_H_
#define KVSTORE_TESTS_SUPPORT_RECORDING_OBSERVER_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "kvstore/store/key.h"
#include "tests/support/eventually.h"

namespace kvstore::testing {

class RecordingObserver : public store::Observer {
 public:
  struct Event {
    enum class Kind { kUpdate, kDelete };
    Kind kind = Kind::kUpdate;
    std::string key;    // GetKeyName()
    std::string value;  // Marshal() of the key; for deletes, of the last value when it is a Key
    bool operator==(const Event&) const = default;
  };
  static Event Update(std::string key, std::string value) {
    return Event{Event::Kind::kUpdate, std::move(key), std::move(value)};
  }
  static Event Delete(std::string key, std::string value) {
    return Event{Event::Kind::kDelete, std::move(key), std::move(value)};
  }

  void OnUpdate(const store::Key& key) override;
  void OnDelete(const store::NamedKey& key) override;

  std::vector<Event> Events() const;
  size_t NumEvents() const;
  // Waits until at least `n` events were recorded.
  bool WaitForEvents(size_t n, std::chrono::steady_clock::duration timeout = kEventuallyTimeout);

 private:
  void Record(Event event);

  mutable std::mutex mu_;  // guards events_
  std::condition_variable cv_;
  std::vector<Event> events_;
};

// For readable test failures.
std::ostream& operator<<(std::ostream& os, const RecordingObserver::Event& event);

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_RECORDING_OBSERVER_H_

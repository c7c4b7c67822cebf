#include "tests/support/recording_observer.h"

#include <utility>

namespace kvstore::testing {
namespace {

std::string ValueOf(const store::Key& key) {
  absl::StatusOr<std::string> value = key.Marshal();
  return value.ok() ? *std::move(value) : "<marshal error: " + value.status().ToString() + ">";
}

}  // namespace

void RecordingObserver::OnUpdate(const store::Key& key) {
  Record(Update(key.GetKeyName(), ValueOf(key)));
}

void RecordingObserver::OnDelete(const store::NamedKey& key) {
  const auto* full = dynamic_cast<const store::Key*>(&key);
  Record(Delete(key.GetKeyName(), full != nullptr ? ValueOf(*full) : ""));
}

void RecordingObserver::Record(Event event) {
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(std::move(event));
  cv_.notify_all();
}

std::vector<RecordingObserver::Event> RecordingObserver::Events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

size_t RecordingObserver::NumEvents() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_.size();
}

bool RecordingObserver::WaitForEvents(size_t n, std::chrono::steady_clock::duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
}

std::ostream& operator<<(std::ostream& os, const RecordingObserver::Event& event) {
  return os << (event.kind == RecordingObserver::Event::Kind::kUpdate ? "Update(" : "Delete(")
            << event.key << ", " << event.value << ")";
}

}  // namespace kvstore::testing

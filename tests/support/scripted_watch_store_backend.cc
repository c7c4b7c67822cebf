#include "tests/support/scripted_watch_store_backend.h"

#include <utility>

#include "core/watcher_producer.h"
#include "kvstore/paths.h"

namespace kvstore::testing {

ScriptedWatchStoreBackend::ScriptedWatchStoreBackend(std::vector<KeyValueEvent> script)
    : ScriptedWatchStoreBackend(std::move(script), Options{}) {}

ScriptedWatchStoreBackend::ScriptedWatchStoreBackend(std::vector<KeyValueEvent> script,
                                                     Options opts)
    : script_(std::move(script)), opts_(opts) {}

ScriptedWatchStoreBackend::~ScriptedWatchStoreBackend() {
  for (const auto& watcher : watchers_) watcher->Close();
}

std::shared_ptr<Watcher> ScriptedWatchStoreBackend::ListAndWatch(const Context& /*ctx*/,
                                                                 std::string_view prefix,
                                                                 size_t capacity) {
  auto watcher = std::make_shared<Watcher>(std::string(prefix), capacity);
  // Stop waits for the producer to close: this producer closes at once, on the consumer's thread.
  internal::WatcherProducer(*watcher).SetStopHook([raw = watcher.get(), stopped = num_stopped_] {
    ++*stopped;
    raw->Close();
  });
  prefixes_.emplace_back(prefix);
  watchers_.push_back(watcher);
  for (const KeyValueEvent& event : script_) {
    if (!Hand(*watcher, event)) break;
  }
  if (opts_.close_after_script) watcher->Close();
  return watcher;
}

bool ScriptedWatchStoreBackend::Hand(Watcher& watcher, KeyValueEvent event) {
  if (event.type != EventType::kListDone) event.key = JoinPath(watcher.Prefix(), event.key);
  return internal::WatcherProducer(watcher).TryEmit(event);
}

bool ScriptedWatchStoreBackend::Feed(KeyValueEvent event) {
  if (watchers_.empty()) return false;
  return Hand(*watchers_.back(), std::move(event));
}

void ScriptedWatchStoreBackend::Close() {
  if (!watchers_.empty()) watchers_.back()->Close();
}

}  // namespace kvstore::testing

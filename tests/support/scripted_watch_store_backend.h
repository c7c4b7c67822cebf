// A WatchStoreBackend without threads, for deterministic tests: ListAndWatch hands the watcher its
// scripted events at once, and Feed hands it live events on the caller's thread. The consumer (a
// WatchAsync coroutine on a ManualExecutor) is woken through the executor, so the test decides
// when the events are handled.
#ifndef KVSTORE_TESTS_SUPPORT_SCRIPTED_WATCH_STORE_BACKEND_H_
#define KVSTORE_TESTS_SUPPORT_SCRIPTED_WATCH_STORE_BACKEND_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstore/backend.h"
#include "kvstore/events.h"

namespace kvstore::testing {

// Not thread-safe: the test's thread creates watchers (through the store it drives), feeds and
// stops them.
class ScriptedWatchStoreBackend : public WatchStoreBackend {
 public:
  struct Options {
    // Close the watcher right after the script (the watch "breaks").
    bool close_after_script = false;
  };

  // Keys of scripted and fed events are relative: the watcher gets them joined to the prefix it
  // was asked for (kListDone events keep an empty key). REQUIRES: the script fits the watcher's
  // capacity (the stores ask for far more than a test scripts).
  explicit ScriptedWatchStoreBackend(std::vector<KeyValueEvent> script = {});
  ScriptedWatchStoreBackend(std::vector<KeyValueEvent> script, Options opts);
  ScriptedWatchStoreBackend(const ScriptedWatchStoreBackend&) = delete;
  ScriptedWatchStoreBackend& operator=(const ScriptedWatchStoreBackend&) = delete;
  // Closes every watcher it made.
  ~ScriptedWatchStoreBackend() override;

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override;

  // Hands a live event to the most recent watcher. False when there is none, or it is stopped,
  // closed or full.
  bool Feed(KeyValueEvent event);
  // Closes the most recent watcher (the watch "breaks"); buffered events are still delivered.
  void Close();

  // Prefixes passed to ListAndWatch, in order.
  const std::vector<std::string>& Prefixes() const { return prefixes_; }
  // Number of watchers their consumer stopped.
  size_t NumStopped() const { return *num_stopped_; }

 private:
  bool Hand(Watcher& watcher, KeyValueEvent event);

  const std::vector<KeyValueEvent> script_;
  const Options opts_;
  std::vector<std::string> prefixes_;
  std::vector<std::shared_ptr<Watcher>> watchers_;
  // Shared with the watchers' stop hooks, which may run after this backend is gone.
  std::shared_ptr<size_t> num_stopped_ = std::make_shared<size_t>(0);
};

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_SCRIPTED_WATCH_STORE_BACKEND_H_

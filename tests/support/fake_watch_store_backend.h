// A WatchStoreBackend that plays a scripted list of events to every watcher it creates, then live
// events fed by the test.
#ifndef KVSTORE_TESTS_SUPPORT_FAKE_WATCH_STORE_BACKEND_H_
#define KVSTORE_TESTS_SUPPORT_FAKE_WATCH_STORE_BACKEND_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kvstore/backend.h"
#include "kvstore/events.h"
#include "tests/support/eventually.h"

namespace kvstore::testing {

class FakeWatchStoreBackend : public WatchStoreBackend {
 public:
  struct Options {
    // Close the watcher right after the script (the watch "breaks") instead of waiting for the
    // context or Stop().
    bool close_after_script = false;
  };

  // Keys of scripted and fed events are relative: the watcher emits them joined to the prefix it
  // was asked for (kListDone events keep an empty key).
  explicit FakeWatchStoreBackend(std::vector<KeyValueEvent> script = {});
  FakeWatchStoreBackend(std::vector<KeyValueEvent> script, Options opts);
  FakeWatchStoreBackend(const FakeWatchStoreBackend&) = delete;
  FakeWatchStoreBackend& operator=(const FakeWatchStoreBackend&) = delete;
  // Stops every producer thread it started.
  ~FakeWatchStoreBackend() override;

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity) override;

  // Queues a live event for the most recent watcher (delivered after its script). False when no
  // watcher was created yet.
  bool Feed(KeyValueEvent event);

  // Prefixes passed to ListAndWatch, in order.
  std::vector<std::string> Prefixes() const;
  // Number of scripted and fed events handed to watchers so far.
  size_t NumEmitted() const;
  bool WaitForWatchers(size_t n, std::chrono::steady_clock::duration timeout = kEventuallyTimeout);
  // Number of watchers whose producer has finished (the watcher is closed).
  size_t NumClosed() const;

 private:
  // One watcher's live side.
  struct LiveFeed {
    std::shared_ptr<Watcher> watcher;
    std::deque<KeyValueEvent> events;  // fed, not yet emitted
    bool stopped = false;              // the consumer stopped, or the fake is being destroyed
  };
  void Produce(Context ctx, std::string prefix, std::shared_ptr<LiveFeed> feed);

  const std::vector<KeyValueEvent> script_;
  const Options opts_;

  mutable std::mutex mu_;  // guards every field below
  std::condition_variable cv_;
  std::vector<std::string> prefixes_;
  std::shared_ptr<LiveFeed> current_feed_;  // of the most recent watcher
  std::vector<std::shared_ptr<LiveFeed>> feeds_;
  size_t num_emitted_ = 0;
  size_t num_closed_ = 0;
  std::vector<std::thread> producers_;
};

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_FAKE_WATCH_STORE_BACKEND_H_

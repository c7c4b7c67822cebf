#include "tests/support/fake_watch_store_backend.h"

#include <utility>

#include "core/watcher_producer.h"
#include "kvstore/paths.h"

namespace kvstore::testing {

FakeWatchStoreBackend::FakeWatchStoreBackend(std::vector<KeyValueEvent> script)
    : FakeWatchStoreBackend(std::move(script), Options{}) {}

FakeWatchStoreBackend::FakeWatchStoreBackend(std::vector<KeyValueEvent> script, Options opts)
    : script_(std::move(script)), opts_(opts) {}

FakeWatchStoreBackend::~FakeWatchStoreBackend() {
  std::vector<std::thread> producers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& feed : feeds_) feed->stopped = true;
    cv_.notify_all();
    producers.swap(producers_);
  }
  // Closing makes a producer blocked in Emit give up.
  for (const auto& feed : feeds_) feed->watcher->Close();
  for (std::thread& producer : producers) producer.join();
}

std::shared_ptr<Watcher> FakeWatchStoreBackend::ListAndWatch(const Context& ctx,
                                                             std::string_view prefix,
                                                             size_t capacity) {
  auto feed = std::make_shared<LiveFeed>();
  feed->watcher = std::make_shared<Watcher>(std::string(prefix), capacity);
  internal::WatcherProducer(*feed->watcher).SetStopHook([this, feed] {
    std::lock_guard<std::mutex> lock(mu_);
    feed->stopped = true;
    cv_.notify_all();
  });
  std::lock_guard<std::mutex> lock(mu_);
  prefixes_.emplace_back(prefix);
  feeds_.push_back(feed);
  current_feed_ = feed;
  producers_.emplace_back(
      [this, ctx, prefix = std::string(prefix), feed] { Produce(ctx, prefix, feed); });
  cv_.notify_all();
  return feed->watcher;
}

void FakeWatchStoreBackend::Produce(Context ctx, std::string prefix,
                                    std::shared_ptr<LiveFeed> feed) {
  auto emit = [&](KeyValueEvent event) {
    if (event.type != EventType::kListDone) event.key = JoinPath(prefix, event.key);
    if (!feed->watcher->Emit(std::move(event), ctx)) return false;
    std::lock_guard<std::mutex> lock(mu_);
    ++num_emitted_;
    cv_.notify_all();
    return true;
  };

  bool open = true;
  for (const KeyValueEvent& event : script_) {
    if (!(open = emit(event))) break;
  }
  while (open && !opts_.close_after_script) {
    KeyValueEvent event;
    {
      std::unique_lock<std::mutex> lock(mu_);
      bool ready = ctx.WaitOn(lock, cv_, [&] { return feed->stopped || !feed->events.empty(); });
      if (!ready || feed->stopped) break;
      event = std::move(feed->events.front());
      feed->events.pop_front();
    }
    open = emit(std::move(event));
  }
  feed->watcher->Close();
  std::lock_guard<std::mutex> lock(mu_);
  ++num_closed_;
  cv_.notify_all();
}

bool FakeWatchStoreBackend::Feed(KeyValueEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!current_feed_) return false;
  current_feed_->events.push_back(std::move(event));
  cv_.notify_all();
  return true;
}

std::vector<std::string> FakeWatchStoreBackend::Prefixes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return prefixes_;
}

size_t FakeWatchStoreBackend::NumEmitted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_emitted_;
}

bool FakeWatchStoreBackend::WaitForWatchers(size_t n, std::chrono::steady_clock::duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return prefixes_.size() >= n; });
}

size_t FakeWatchStoreBackend::NumClosed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_closed_;
}

}  // namespace kvstore::testing

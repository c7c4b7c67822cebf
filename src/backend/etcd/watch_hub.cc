#include "backend/etcd/watch_hub.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backend/etcd/errors.h"
#include "backend/etcd/key_range.h"
#include "core/backoff.h"
#include "core/watcher_producer.h"
#include "metrics/recorders.h"

namespace kvstore::etcd {
namespace {

// Events delivered to one watcher before yielding the executor thread to others.
constexpr int kDeliveryBatch = 256;

constexpr auto kRetryBase = std::chrono::milliseconds(100);
constexpr auto kRetryMax = std::chrono::milliseconds(5000);

}  // namespace

struct WatchHub::Entry {
  using TimePoint = kvstore::internal::EventsQueueRecorder::TimePoint;

  Entry(uint64_t id, std::string prefix, std::shared_ptr<Watcher> watcher, Context ctx,
        BackendMetrics* metrics)
      : id(id),
        range(PrefixRange(prefix)),
        prefix(std::move(prefix)),
        watcher(std::move(watcher)),
        ctx(std::move(ctx)),
        queue_metrics(metrics, this->prefix) {}

  const uint64_t id;
  const KeyRange range;
  const std::string prefix;
  const std::shared_ptr<Watcher> watcher;
  const Context ctx;

  // Guarded by WatchHub::mu_.
  uint64_t ctx_callback = 0;
  Phase phase = Phase::kListing;
  int64_t watch_id = 0;  // on the current stream; 0: not subscribed there
  int64_t revision = 0;  // every change up to this revision is reflected in `known`
  bool list_done_sent = false;
  // The keys this watcher reported as existing, with their mod revision: decides kCreate vs
  // kModify, which deletes to report, and the difference after a re-list. Keyed without the
  // watched prefix (every key in the range has it), which keeps most names short and inline.
  // A B-tree: each watch event looks its key up here, and with many watchers the nodes of a
  // red-black tree missed the cache on most of the ~17 levels.
  absl::btree_map<std::string, int64_t, std::less<>> known;

  // `key` without the watched prefix.
  std::string_view Relative(std::string_view key) const {
    return key.starts_with(prefix) ? key.substr(prefix.size()) : key;
  }
  // The running (re)list: its pinned revision (0 before the first page) and where the next page
  // starts. Keys of `known` below `list_cursor` were compared with the listing already.
  int64_t list_revision = 0;
  std::string list_cursor;
  int64_t page_limit = 0;
  bool page_wanted = false;  // the next page waits for the consumer to catch up
  int failures = 0;
  // Events received for the watcher and not yet taken by it, each with when it was received.
  struct Pending {
    KeyValueEvent event;
    TimePoint received;
  };
  std::deque<Pending> pending;
  bool delivering = false;  // an executor thread owns delivery (or a retry is scheduled)
  kvstore::internal::EventsQueueRecorder queue_metrics;  // used by whoever delivers

  void Queue(KeyValueEvent event, TimePoint received) {
    pending.push_back(Pending{std::move(event), received});
  }
  // Hands `item` to the watcher if it has room now (moving its event out).
  bool TryHandOver(Pending& item) {
    const EventType type = item.event.type;
    if (!internal::WatcherProducer(*watcher).TryEmit(item.event)) return false;
    queue_metrics.Accepted(type, item.received);
    return true;
  }
};

WatchHub::WatchHub(Transport* transport, Executor* executor, int64_t page_size,
                   BackendMetrics* metrics)
    : transport_(transport),
      executor_(executor),
      page_size_(std::max<int64_t>(page_size, 1)),
      metrics_(metrics) {}

std::shared_ptr<Watcher> WatchHub::ListAndWatch(const Context& ctx, std::string_view prefix,
                                                size_t capacity) {
  auto watcher = std::make_shared<Watcher>(std::string(prefix), capacity);
  std::shared_ptr<Entry> entry;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (shutdown_ || ctx.Done()) {
      watcher->Close();
      return watcher;
    }
    entry = std::make_shared<Entry>(next_entry_id_++, std::string(prefix), watcher, ctx, metrics_);
    entry->list_cursor = entry->range.start;
    entry->page_limit = FirstPageLimit(page_size_);
    entries_.emplace(entry->id, entry);
  }
  std::weak_ptr<WatchHub> weak = weak_from_this();
  // Weak: the entry owns the watcher, so a strong reference in the watcher's hook would keep both
  // alive forever once the consumer drops the watcher without stopping it. While the watch runs,
  // entries_ keeps the entry alive.
  std::weak_ptr<Entry> weak_entry = entry;
  auto finish = [weak, weak_entry] {
    std::shared_ptr<WatchHub> self = weak.lock();
    std::shared_ptr<Entry> live = weak_entry.lock();
    if (self && live) self->Finish(live);
  };
  internal::WatcherProducer(*watcher).SetStopHook(finish);
  uint64_t callback = ctx.AddCallback(finish);
  {
    std::lock_guard<std::mutex> guard(mu_);
    entry->ctx_callback = callback;
    if (entry->phase == Phase::kDone) {
      // Finished meanwhile: the callback may still be registered.
      Context cb_ctx = entry->ctx;
      executor_->Post([cb_ctx, callback] {
        if (callback != 0) cb_ctx.RemoveCallback(callback);
      });
      return watcher;
    }
  }
  executor_->Post([weak, entry] {
    if (auto self = weak.lock()) self->FetchPage(entry);
  });
  return watcher;
}

void WatchHub::FetchPage(const std::shared_ptr<Entry>& entry) {
  etcdserverpb::RangeRequest request;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (entry->phase != Phase::kListing) return;
    request.set_key(entry->list_cursor);
    request.set_range_end(entry->range.end);
    request.set_limit(entry->page_limit);
    request.set_revision(entry->list_revision);
  }
  std::weak_ptr<WatchHub> weak = weak_from_this();
  transport_->AsyncRange(
      absl::StrCat("list of '", entry->prefix, "' for a watcher"), request,
      [weak, entry](const absl::Status& status, etcdserverpb::RangeResponse& resp) {
        if (auto self = weak.lock()) self->OnPage(entry, status, resp);
      });
}

void WatchHub::RestartListLocked(const std::shared_ptr<Entry>& entry) {
  entry->phase = Phase::kListing;
  entry->list_revision = 0;
  entry->list_cursor = entry->range.start;
  entry->page_limit = FirstPageLimit(page_size_);
  entry->page_wanted = false;
  std::weak_ptr<WatchHub> weak = weak_from_this();
  executor_->Post([weak, entry] {
    if (auto self = weak.lock()) self->FetchPage(entry);
  });
}

void WatchHub::OnPage(const std::shared_ptr<Entry>& entry, const absl::Status& status,
                      etcdserverpb::RangeResponse& response) {
  std::lock_guard<std::mutex> guard(mu_);
  if (entry->phase != Phase::kListing || shutdown_) return;
  if (!status.ok()) {
    if (IsCompactedError(status)) {
      // The pinned revision went away mid-list: list again at a fresh one. The comparison with
      // `known` makes the restart emit only real differences.
      RestartListLocked(entry);
      return;
    }
    auto delay = internal::BackoffDelay(entry->failures++, kRetryBase, kRetryMax);
    spdlog::warn("etcd watcher of '{}': {}; retrying in {} ms", entry->prefix, status.ToString(),
                 delay.count());
    std::weak_ptr<WatchHub> weak = weak_from_this();
    executor_->PostAfter(delay, [weak, entry] {
      if (auto self = weak.lock()) self->FetchPage(entry);
    });
    return;
  }
  entry->failures = 0;
  if (entry->list_revision == 0) entry->list_revision = response.header().revision();
  const Entry::TimePoint received = entry->queue_metrics.Received();
  size_t bytes = 0;
  // Reports the key at `it` as deleted and forgets it; returns the key after it.
  auto vanish = [&](auto it) {
    entry->Queue(KeyValueEvent{EventType::kDelete, entry->prefix + it->first, std::string(),
                               entry->list_revision},
                 received);
    return entry->known.erase(it);
  };
  // At the end of the list: every key of `known` after the cursor vanished.
  auto emit_vanished_after_cursor = [&] {
    auto it = entry->known.lower_bound(entry->Relative(entry->list_cursor));
    while (it != entry->known.end()) it = vanish(it);
  };
  // Keys arrive sorted: one walk along `known` finds the vanished ones (those between two listed
  // keys) and where each listed key goes.
  auto it = entry->known.lower_bound(entry->Relative(entry->list_cursor));
  for (mvccpb::KeyValue& kv : *response.mutable_kvs()) {
    bytes += kv.key().size() + kv.value().size();
    const std::string_view rel = entry->Relative(kv.key());
    while (it != entry->known.end() && it->first < rel) it = vanish(it);
    const bool inserted = it == entry->known.end() || it->first != rel;
    if (inserted) it = entry->known.emplace_hint(it, std::string(rel), kv.mod_revision());
    entry->list_cursor.assign(kv.key());
    entry->list_cursor.push_back('\0');  // KeyAfter
    if (inserted || it->second != kv.mod_revision()) {
      it->second = kv.mod_revision();
      entry->Queue(KeyValueEvent{inserted ? EventType::kCreate : EventType::kModify,
                                 std::move(*kv.mutable_key()), std::move(*kv.mutable_value()),
                                 kv.mod_revision()},
                   received);
    }
    ++it;
  }
  entry->page_limit = FittingPageLimit(page_size_, response.kvs_size(), bytes);
  if (response.more() && response.kvs_size() > 0) {
    entry->page_wanted = true;
    RequestPageIfDueLocked(entry);
  } else {
    emit_vanished_after_cursor();
    if (!entry->list_done_sent) {
      entry->list_done_sent = true;
      entry->Queue(KeyValueEvent{EventType::kListDone, "", "", entry->list_revision}, received);
    }
    entry->revision = entry->list_revision;
    entry->phase = Phase::kWatching;
    SubscribeLocked(entry);
  }
  ScheduleDeliveryLocked(entry);
}

void WatchHub::RequestPageIfDueLocked(const std::shared_ptr<Entry>& entry) {
  // At most about two pages wait for the consumer: the list never piles up in memory.
  if (entry->phase != Phase::kListing || !entry->page_wanted ||
      entry->pending.size() > static_cast<size_t>(entry->page_limit)) {
    return;
  }
  entry->page_wanted = false;
  std::weak_ptr<WatchHub> weak = weak_from_this();
  executor_->Post([weak, entry] {
    if (auto self = weak.lock()) self->FetchPage(entry);
  });
}

void WatchHub::SubscribeLocked(const std::shared_ptr<Entry>& entry) {
  if (entry->phase != Phase::kWatching || entry->watch_id != 0) return;
  if (!stream_) {
    EnsureStreamLocked();  // subscribes every watching entry once open
    return;
  }
  entry->watch_id = next_watch_id_++;
  by_watch_id_[entry->watch_id] = entry;
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(entry->range.start);
  create->set_range_end(entry->range.end);
  create->set_start_revision(entry->revision + 1);
  create->set_prev_kv(true);
  create->set_progress_notify(true);
  create->set_watch_id(entry->watch_id);
  stream_->Write(std::move(request));
}

void WatchHub::Resubscribe(const std::shared_ptr<Entry>& entry) {
  std::lock_guard<std::mutex> guard(mu_);
  if (!shutdown_) SubscribeLocked(entry);
}

bool WatchHub::AnyWatchingLocked() const {
  for (const auto& [id, entry] : entries_) {
    if (entry->phase == Phase::kWatching) return true;
  }
  return false;
}

void WatchHub::EnsureStreamLocked() {
  if (stream_ || stream_starting_ || shutdown_) return;
  stream_starting_ = true;
  auto delay = stream_failures_ == 0
                   ? std::chrono::milliseconds(0)
                   : internal::BackoffDelay(stream_failures_ - 1, kRetryBase, kRetryMax);
  std::weak_ptr<WatchHub> weak = weak_from_this();
  executor_->PostAfter(delay, [weak] {
    if (auto self = weak.lock()) self->StartStream();
  });
}

void WatchHub::StartStream() {
  uint64_t generation;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (shutdown_ || !AnyWatchingLocked()) {
      stream_starting_ = false;
      return;
    }
    generation = ++stream_generation_;
  }
  std::weak_ptr<WatchHub> weak = weak_from_this();
  absl::StatusOr<std::shared_ptr<WatchRequests>> started = transport_->StartWatchStream(
      [weak, generation](etcdserverpb::WatchResponse& response) {
        if (auto self = weak.lock()) self->OnResponse(generation, response);
      },
      [weak, generation](const absl::Status& status) {
        if (auto self = weak.lock()) self->OnStreamDone(generation, status);
      });
  std::unique_lock<std::mutex> lock(mu_);
  stream_starting_ = false;
  if (!started.ok()) {
    ++stream_failures_;
    spdlog::warn("etcd watch stream: {}", started.status().ToString());
    if (IsAuthTokenError(started.status())) transport_->ForgetTokens();
    EnsureStreamLocked();
    return;
  }
  if (generation != stream_generation_ || shutdown_) {
    // Ended (or shut down) before we got here; OnStreamDone arranged what follows.
    lock.unlock();
    (*started)->Cancel();
    return;
  }
  stream_ = *started;
  for (const auto& [id, entry] : entries_) SubscribeLocked(entry);
}

void WatchHub::OnResponse(uint64_t generation, etcdserverpb::WatchResponse& response) {
  std::lock_guard<std::mutex> guard(mu_);
  if (generation != stream_generation_ || shutdown_) return;
  stream_failures_ = 0;
  auto it = by_watch_id_.find(response.watch_id());
  if (it == by_watch_id_.end()) return;  // cancelled by us, or a stream-wide progress answer
  std::shared_ptr<Entry> entry = it->second;
  if (response.canceled()) {
    by_watch_id_.erase(it);
    entry->watch_id = 0;
    if (entry->phase != Phase::kWatching) return;
    if (response.compact_revision() > 0) {
      spdlog::info("etcd watcher of '{}': revision {} compacted (now {}); listing again",
                   entry->prefix, entry->revision + 1, response.compact_revision());
      RestartListLocked(entry);
      return;
    }
    auto delay = internal::BackoffDelay(entry->failures++, kRetryBase, kRetryMax);
    spdlog::warn("etcd watcher of '{}' cancelled by the server ({}); retrying in {} ms",
                 entry->prefix, response.cancel_reason(), delay.count());
    if (absl::StrContains(response.cancel_reason(), "permission denied") ||
        absl::StrContains(response.cancel_reason(), "auth")) {
      transport_->ForgetTokens();
    }
    std::weak_ptr<WatchHub> weak = weak_from_this();
    executor_->PostAfter(delay, [weak, entry] {
      if (auto self = weak.lock()) self->Resubscribe(entry);
    });
    return;
  }
  if (response.created() || entry->phase != Phase::kWatching) return;
  entry->failures = 0;
  if (response.events_size() == 0) {
    // Progress notification: no event up to the header's revision is missing.
    entry->revision = std::max(entry->revision, response.header().revision());
    return;
  }
  const Entry::TimePoint received = entry->queue_metrics.Received();
  for (mvccpb::Event& event : *response.mutable_events()) {
    mvccpb::KeyValue* kv = event.mutable_kv();
    int64_t revision = kv->mod_revision();
    entry->revision = std::max(entry->revision, revision);
    if (event.type() == mvccpb::Event::PUT) {
      auto [known, inserted] =
          entry->known.try_emplace(std::string(entry->Relative(kv->key())), revision);
      known->second = revision;
      entry->Queue(KeyValueEvent{inserted ? EventType::kCreate : EventType::kModify, kv->key(),
                                 std::move(*kv->mutable_value()), revision},
                   received);
    } else {
      auto known = entry->known.find(entry->Relative(kv->key()));
      if (known == entry->known.end()) continue;  // never reported: nothing to take back
      entry->known.erase(known);
      std::string last_value =
          event.has_prev_kv() ? std::move(*event.mutable_prev_kv()->mutable_value()) : "";
      entry->Queue(KeyValueEvent{EventType::kDelete, kv->key(), std::move(last_value), revision},
                   received);
    }
  }
  ScheduleDeliveryLocked(entry);
}

void WatchHub::OnStreamDone(uint64_t generation, const absl::Status& status) {
  std::lock_guard<std::mutex> guard(mu_);
  if (generation != stream_generation_) return;
  ++stream_generation_;  // a StartStream still running for this generation drops its stream
  stream_ = nullptr;
  for (auto& [watch_id, entry] : by_watch_id_) entry->watch_id = 0;
  by_watch_id_.clear();
  if (shutdown_ || !AnyWatchingLocked()) return;
  ++stream_failures_;
  spdlog::warn("etcd watch stream ended ({}); resuming {} watchers", status.ToString(),
               entries_.size());
  if (IsAuthTokenError(status)) transport_->ForgetTokens();
  EnsureStreamLocked();
}

void WatchHub::ScheduleDeliveryLocked(const std::shared_ptr<Entry>& entry) {
  if (entry->delivering || entry->pending.empty() || entry->phase == Phase::kDone) return;
  // While the watcher has room, hand events over right here: TryEmit never blocks, and this
  // saves waking an executor thread per event (mu_ is taken before a watcher's lock, never
  // after). Nobody else delivers for the entry meanwhile, as `delivering` is false and mu_ held.
  while (!entry->pending.empty() && entry->TryHandOver(entry->pending.front())) {
    entry->pending.pop_front();
  }
  if (entry->pending.empty()) {
    RequestPageIfDueLocked(entry);
    return;
  }
  entry->delivering = true;
  std::weak_ptr<WatchHub> weak = weak_from_this();
  executor_->Post([weak, entry] {
    if (auto self = weak.lock()) self->Deliver(entry);
  });
}

void WatchHub::Deliver(const std::shared_ptr<Entry>& entry) {
  std::weak_ptr<WatchHub> weak = weak_from_this();
  Entry::Pending item;
  for (int delivered = 0;; ++delivered) {
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (entry->phase == Phase::kDone || entry->pending.empty()) {
        entry->delivering = false;
        RequestPageIfDueLocked(entry);
        return;
      }
      if (delivered == kDeliveryBatch) {
        // Yield to other watchers; delivery continues from the executor's queue.
        RequestPageIfDueLocked(entry);
        executor_->Post([weak, entry] {
          if (auto self = weak.lock()) self->Deliver(entry);
        });
        return;
      }
      item = std::move(entry->pending.front());
      entry->pending.pop_front();
    }
    if (entry->TryHandOver(item)) continue;
    {
      std::lock_guard<std::mutex> guard(mu_);
      if (entry->phase == Phase::kDone) {
        entry->delivering = false;
        return;
      }
      entry->pending.push_front(std::move(item));
      RequestPageIfDueLocked(entry);
    }
    if (internal::WatcherProducer(*entry->watcher).Stopped() || entry->ctx.Done()) {
      Finish(entry);
      return;
    }
    // Full: the consumer's next read (or a stop or close) resumes delivery, so no executor
    // thread waits or polls meanwhile. `delivering` stays set until then.
    internal::WatcherProducer(*entry->watcher).NotifyWhenSpace([weak, entry] {
      std::shared_ptr<WatchHub> self = weak.lock();
      if (!self) return;
      // On the consumer's thread: after Shutdown the executor may be gone.
      std::lock_guard<std::mutex> guard(self->mu_);
      if (self->shutdown_) return;
      self->executor_->Post([weak, entry] {
        if (auto self = weak.lock()) self->Deliver(entry);
      });
    });
    return;
  }
}

void WatchHub::Finish(const std::shared_ptr<Entry>& entry) {
  std::shared_ptr<WatchRequests> stream;
  uint64_t callback = 0;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (entry->phase == Phase::kDone) return;
    entry->phase = Phase::kDone;
    entry->pending.clear();
    entry->known.clear();
    entries_.erase(entry->id);
    if (entry->watch_id != 0) {
      by_watch_id_.erase(entry->watch_id);
      if (stream_) {
        etcdserverpb::WatchRequest request;
        request.mutable_cancel_request()->set_watch_id(entry->watch_id);
        stream_->Write(std::move(request));
      }
      entry->watch_id = 0;
    }
    if (entries_.empty() && stream_) stream = stream_;  // no watcher left: close the stream
    callback = entry->ctx_callback;
    entry->ctx_callback = 0;
    // Not on this thread: this may run inside that very callback. Only before Shutdown: Finish
    // also runs on the context's and the consumer's threads, and the executor goes away with the
    // backend once Shutdown returned (the callback only holds weak references, so it may stay).
    if (callback != 0 && !shutdown_) {
      Context ctx = entry->ctx;
      executor_->Post([ctx, callback] { ctx.RemoveCallback(callback); });
    }
  }
  entry->watcher->Close();
  if (stream) stream->Cancel();
}

void WatchHub::Shutdown() {
  std::vector<std::shared_ptr<Entry>> entries;
  std::shared_ptr<WatchRequests> stream;
  {
    std::lock_guard<std::mutex> guard(mu_);
    shutdown_ = true;
    for (const auto& [id, entry] : entries_) entries.push_back(entry);
    stream = stream_;
  }
  for (const auto& entry : entries) {
    uint64_t callback = 0;
    {
      std::lock_guard<std::mutex> guard(mu_);
      entry->phase = Phase::kDone;
      entry->pending.clear();
      callback = entry->ctx_callback;
      entry->ctx_callback = 0;
      entries_.erase(entry->id);
    }
    entry->watcher->Close();
    if (callback != 0) entry->ctx.RemoveCallback(callback);
  }
  if (stream) stream->Cancel();
}

size_t WatchHub::NumWatchers() const {
  std::lock_guard<std::mutex> guard(mu_);
  return entries_.size();
}

}  // namespace kvstore::etcd

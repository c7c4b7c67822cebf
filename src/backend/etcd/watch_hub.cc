#include "backend/etcd/watch_hub.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "backend/etcd/errors.h"
#include "backend/etcd/key_range.h"
#include "core/backoff.h"
#include "core/relist_diff.h"
#include "core/watcher_producer.h"
#include "core/write_checks.h"
#include "kvstore/mutex.h"
#include "kvstore/paths.h"
#include "metrics/recorders.h"

namespace kvstore::etcd {
namespace {

// Events handed to one watcher before yielding the executor thread to others.
constexpr int kDeliveryBatch = 256;
// Responses a watcher with room may hold before Apply caught up with them; one more pauses its
// watch like a full watcher does. Only a stalled executor gets there.
constexpr size_t kMaxHeldResponses = 64;
// List pages held: the one being handed over and the next, fetched meanwhile.
constexpr size_t kMaxHeldPages = 2;

constexpr auto kRetryBase = std::chrono::milliseconds(100);
constexpr auto kRetryMax = std::chrono::milliseconds(5000);
// A watch refused again with a fresh token is retried (with a new stream, which every other
// watch of the stream resumes on) at most this often.
constexpr auto kRefusedRetryBase = std::chrono::milliseconds(1000);
constexpr auto kRefusedRetryMax = std::chrono::milliseconds(30000);

// etcd's cancel reasons for a watch refused for its credentials or permission: "etcdserver:
// permission denied" (3.4 says only this, also for an invalid token), "etcdserver: invalid auth
// token", "etcdserver: revision of auth store is old", "etcdserver: user name is empty".
bool IsRefusal(const std::string& reason) {
  return absl::StrContains(reason, "permission denied") ||
         absl::StrContains(reason, "auth token") || absl::StrContains(reason, "auth store") ||
         absl::StrContains(reason, "user name is empty");
}

// A login or list that failed for credentials or permission: retrying alone does not fix it (a
// token that expired or that etcd forgot is renewed by the next call, and does not count).
bool IsRefusal(const absl::Status& status) {
  if (status.ok() || IsAuthTokenError(status)) return false;
  return status.code() == absl::StatusCode::kPermissionDenied ||
         absl::StrContains(status.message(), "authentication failed");
}

}  // namespace

struct WatchHub::Entry {
  using TimePoint = kvstore::internal::EventsQueueRecorder::TimePoint;
  // A page or a watch response as it was received, and when.
  template <typename Message>
  struct Held {
    std::unique_ptr<Message> message;
    TimePoint received;
  };

  Entry(uint64_t id, std::string prefix, std::shared_ptr<Watcher> watcher, Context ctx,
        int64_t page_size, bool delete_values, BackendMetrics* metrics)
      : id(id),
        range(PrefixRange(prefix)),
        prefix(prefix),
        watcher(std::move(watcher)),
        ctx(std::move(ctx)),
        known(prefix, delete_values),
        pager(this->prefix, page_size),
        queue_metrics(metrics, this->prefix),
        stalled_gauge(metrics == nullptr ? nullptr
                                         : &metrics->WatchersStalled(GetScopeFromKey(prefix))),
        last_heard_gauge(metrics == nullptr ? nullptr
                                            : &metrics->WatchLastHeard(GetScopeFromKey(prefix))),
        pages_counter(metrics == nullptr ? nullptr : &metrics->ListPages(GetScopeFromKey(prefix))) {
  }

  const uint64_t id;
  const KeyRange range;
  const std::string prefix;
  const std::shared_ptr<Watcher> watcher;
  const Context ctx;

  // Everything below is guarded by WatchHub::mu_.
  uint64_t ctx_callback = 0;
  Phase phase = Phase::kListing;
  int failures = 0;  // consecutive, for the retry backoff
  // Consecutive refusals of its watch for credentials or permission (the first one renews the
  // token; from the second, with a fresh token, it cannot resume).
  int refusals = 0;
  std::string stalled;  // why it cannot resume; empty while it can
  bool list_done_sent = false;
  // How fresh its view is (WatchHub::Freshness).
  std::optional<std::chrono::system_clock::time_point> last_heard;
  uint64_t list_pages = 0;
  std::map<std::string, uint64_t, std::less<>> restarts;  // by reason
  // What the watcher's consumer was told.
  internal::KnownKeys known;
  // Every change up to this revision was handed to the watcher.
  int64_t revision = 0;

  // The running (re)list. A restart begins a new generation: answers to an older one are dropped.
  uint64_t list_generation = 0;
  ListPager pager;              // the same pages as ListPrefix
  bool page_requested = false;  // a fetch is on its way (or its retry is scheduled)
  bool last_page_received = false;
  std::optional<internal::RelistDiff> diff;  // of the listing with `known`, from the first page
  std::deque<Held<etcdserverpb::RangeResponse>> pages;  // at most kMaxHeldPages

  // While watching.
  int64_t watch_id = 0;  // on the current stream; 0: not subscribed there
  // To subscribe once every held response was handed over (paused, or the stream was lost).
  bool resume_pending = false;
  std::deque<Held<etcdserverpb::WatchResponse>> responses;

  // Of the front page or response: the items (keys, events) handed over already.
  int next_item = 0;
  TimePoint last_received{};  // of the last page, for the events that end a list
  // Apply is posted, running or waiting for room in the watcher: nobody else posts it meanwhile.
  bool applying = false;
  kvstore::internal::EventsQueueRecorder queue_metrics;
  prometheus::Gauge* const stalled_gauge;  // null without metrics
  prometheus::Gauge* const last_heard_gauge;
  prometheus::Counter* const pages_counter;

  // The watch heard from etcd at `now` (wall clock).
  void Heard(std::chrono::system_clock::time_point now) {
    last_heard = now;
    if (last_heard_gauge != nullptr) {
      last_heard_gauge->Set(std::chrono::duration<double>(now.time_since_epoch()).count());
    }
  }

  // Offers `event` to the watcher; see internal::EmitFn.
  bool TryHandOver(KeyValueEvent& event, TimePoint received) {
    const EventType type = event.type;
    if (!internal::WatcherProducer(*watcher).TryEmit(event)) return false;
    queue_metrics.Accepted(type, received);
    return true;
  }
};

WatchHub::WatchHub(Transport* transport, Executor* executor, int64_t page_size,
                   BackendMetrics* metrics, std::chrono::milliseconds answer_timeout)
    : transport_(transport),
      executor_(executor),
      page_size_(std::max<int64_t>(page_size, 0)),
      metrics_(metrics),
      answer_timeout_(answer_timeout) {}

std::shared_ptr<Watcher> WatchHub::ListAndWatch(const Context& ctx, std::string_view prefix,
                                                size_t capacity, const WatchOptions& options) {
  auto watcher = std::make_shared<Watcher>(std::string(prefix), capacity);
  std::shared_ptr<Entry> entry;
  {
    MutexLock guard(mu_);
    if (shutdown_ || ctx.Done()) {
      watcher->Close();
      return watcher;
    }
    entry = std::make_shared<Entry>(next_entry_id_++, std::string(prefix), watcher, ctx, page_size_,
                                    options.delete_values, metrics_);
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
  MutexLock guard(mu_);
  entry->ctx_callback = callback;
  if (entry->phase == Phase::kDone) {
    // Finished meanwhile: the callback may still be registered.
    Context cb_ctx = entry->ctx;
    executor_->Post([cb_ctx, callback] {
      if (callback != 0) cb_ctx.RemoveCallback(callback);
    });
    return watcher;
  }
  RestartListLocked(entry);
  return watcher;
}

void WatchHub::RestartListLocked(const std::shared_ptr<Entry>& entry) {
  entry->phase = Phase::kListing;
  ++entry->list_generation;
  entry->pager.Restart();
  entry->page_requested = false;
  entry->last_page_received = false;
  entry->diff.reset();
  entry->pages.clear();
  // Only a watch the server ended can get here while watching; the list makes up for what it
  // still held.
  entry->responses.clear();
  entry->resume_pending = false;
  entry->next_item = 0;
  RequestPageIfDueLocked(entry);
}

void WatchHub::RequestPageIfDueLocked(const std::shared_ptr<Entry>& entry) {
  // Pages wait for the consumer: the next one is fetched while the previous is handed over.
  if (entry->phase != Phase::kListing || entry->page_requested || entry->last_page_received ||
      entry->pages.size() >= kMaxHeldPages) {
    return;
  }
  entry->page_requested = true;
  std::weak_ptr<WatchHub> weak = weak_from_this();
  executor_->Post([weak, entry, generation = entry->list_generation] {
    if (auto self = weak.lock()) self->FetchPage(entry, generation);
  });
}

void WatchHub::FetchPage(const std::shared_ptr<Entry>& entry, uint64_t list_generation) {
  etcdserverpb::RangeRequest request;
  {
    MutexLock guard(mu_);
    if (entry->phase != Phase::kListing || entry->list_generation != list_generation) return;
    request = entry->pager.NextRequest();
  }
  std::weak_ptr<WatchHub> weak = weak_from_this();
  transport_->AsyncRange(
      absl::StrCat("list of ", internal::DescribeKey(entry->prefix), " for a watcher"), request,
      [weak, entry, list_generation](const absl::Status& status,
                                     etcdserverpb::RangeResponse& response) {
        if (auto self = weak.lock()) self->OnPage(entry, list_generation, status, response);
      });
}

void WatchHub::OnPage(const std::shared_ptr<Entry>& entry, uint64_t list_generation,
                      const absl::Status& status, etcdserverpb::RangeResponse& response) {
  MutexLock guard(mu_);
  if (entry->phase != Phase::kListing || entry->list_generation != list_generation || shutdown_) {
    return;
  }
  entry->page_requested = false;
  if (!status.ok()) {
    if (IsCompactedError(status)) {
      // The pinned revision went away mid-list: list again at a fresh one. The comparison with
      // what the watcher was told makes the restart emit only real differences.
      RestartListLocked(entry);
      return;
    }
    auto delay = internal::BackoffDelay(entry->failures++, kRetryBase, kRetryMax);
    spdlog::warn("etcd watcher of '{}': {}; retrying in {} ms", entry->prefix, status.ToString(),
                 delay.count());
    if (IsRefusal(status)) SetStalledLocked(*entry, status.ToString());
    entry->page_requested = true;
    std::weak_ptr<WatchHub> weak = weak_from_this();
    executor_->PostAfter(delay, [weak, entry, list_generation] {
      if (auto self = weak.lock()) self->FetchPage(entry, list_generation);
    });
    return;
  }
  entry->failures = 0;
  ClearStalledLocked(*entry);
  ++entry->list_pages;
  if (entry->pages_counter != nullptr) entry->pages_counter->Increment();
  if (!entry->pager.Advance(response)) {
    entry->last_page_received = true;
    entry->Heard(executor_->clock()->WallNow());
  }
  entry->pages.push_back(Entry::Held<etcdserverpb::RangeResponse>{
      std::make_unique<etcdserverpb::RangeResponse>(std::move(response)),
      entry->queue_metrics.Received()});
  ScheduleApplyLocked(entry);
  RequestPageIfDueLocked(entry);
}

void WatchHub::SubscribeLocked(const std::shared_ptr<Entry>& entry) {
  if (entry->phase != Phase::kWatching || entry->watch_id != 0) return;
  if (!entry->responses.empty() || !stream_) {
    // Its revision moves on while it hands the held responses over: Apply subscribes once they
    // are (and a new stream subscribes every entry once open).
    entry->resume_pending = true;
    if (!stream_) EnsureStreamLocked();
    return;
  }
  entry->resume_pending = false;
  entry->watch_id = next_watch_id_++;
  by_watch_id_[entry->watch_id] = entry;
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(entry->range.start);
  create->set_range_end(entry->range.end);
  create->set_start_revision(entry->revision + 1);
  // No prev_kv: a delete reports the last value the watcher was told (KnownKeys), which is it,
  // or no value when the watcher did not ask for one (WatchOptions::delete_values).
  create->set_progress_notify(true);
  create->set_watch_id(entry->watch_id);
  stream_->Write(std::move(request));
  awaiting_created_.push_back(entry->watch_id);
  // Until the stream said anything, it may be waiting for its connection: the check starts when
  // it first does (StartAnswerChecksLocked).
  if (heard_any_) ScheduleAnswerCheckLocked(entry->watch_id);
}

void WatchHub::ScheduleAnswerCheckLocked(int64_t watch_id) {
  std::weak_ptr<WatchHub> weak = weak_from_this();
  executor_->PostAfter(answer_timeout_, [weak, generation = stream_generation_, watch_id] {
    if (auto self = weak.lock()) self->CheckAnswered(generation, watch_id);
  });
}

void WatchHub::StartAnswerChecksLocked() {
  ScheduleSilenceCheckLocked();
  for (int64_t watch_id : awaiting_created_) ScheduleAnswerCheckLocked(watch_id);
}

void WatchHub::CheckAnswered(uint64_t generation, int64_t watch_id) {
  std::shared_ptr<WatchRequests> replaced;
  {
    MutexLock guard(mu_);
    if (shutdown_ || generation != stream_generation_ || !stream_ ||
        std::find(awaiting_created_.begin(), awaiting_created_.end(), watch_id) ==
            awaiting_created_.end()) {
      return;
    }
    // Checked only once the stream said something (SubscribeLocked), and heard_any_ stays set
    // for the rest of the stream's generation.
    if (!heard_any_) return;
    auto it = by_watch_id_.find(watch_id);
    spdlog::warn(
        "etcd watch stream: the watch of '{}' was not answered within {} ms; opening a new "
        "stream",
        it == by_watch_id_.end() ? std::string("?") : it->second->prefix, answer_timeout_.count());
    for (const auto& [id, entry] : by_watch_id_) CountRestartLocked(*entry, "unanswered");
    replaced =
        ReplaceStreamLocked(internal::BackoffDelay(stream_failures_++, kRetryBase, kRetryMax));
  }
  if (replaced) replaced->Cancel();
}

void WatchHub::ScheduleSilenceCheckLocked() {
  std::weak_ptr<WatchHub> weak = weak_from_this();
  executor_->PostAfter(answer_timeout_, [weak, generation = stream_generation_] {
    if (auto self = weak.lock()) self->CheckSilence(generation);
  });
}

void WatchHub::CheckSilence(uint64_t generation) {
  std::shared_ptr<WatchRequests> replaced;
  {
    MutexLock guard(mu_);
    if (shutdown_ || generation != stream_generation_ || !stream_) return;
    const bool silent = executor_->clock()->Now() - last_heard_ >= answer_timeout_;
    if (!silent || by_watch_id_.empty() || !heard_any_) {
      // Heard from lately, nothing subscribed that etcd would report progress for, or not
      // connected yet.
    } else if (!progress_requested_) {
      // Quiet is normal for a watch of keys nobody writes: etcd's answer tells it apart from a
      // member that stopped answering.
      etcdserverpb::WatchRequest request;
      request.mutable_progress_request();
      stream_->Write(std::move(request));
      progress_requested_ = true;
    } else {
      spdlog::warn(
          "etcd watch stream: no answer to a progress request within {} ms; opening a new stream",
          answer_timeout_.count());
      for (const auto& [id, entry] : by_watch_id_) CountRestartLocked(*entry, "unanswered");
      replaced =
          ReplaceStreamLocked(internal::BackoffDelay(stream_failures_++, kRetryBase, kRetryMax));
    }
    if (!replaced) ScheduleSilenceCheckLocked();
  }
  if (replaced) replaced->Abandon();
}

std::shared_ptr<WatchRequests> WatchHub::ReplaceStreamLocked(std::chrono::milliseconds delay) {
  std::shared_ptr<WatchRequests> old = std::move(stream_);
  stream_ = nullptr;
  ++stream_generation_;  // what the old stream still says is ignored, its end too
  for (auto& [watch_id, entry] : by_watch_id_) entry->watch_id = 0;
  by_watch_id_.clear();
  awaiting_created_.clear();
  EnsureStreamLocked(delay);
  return old;
}

void WatchHub::Resubscribe(const std::shared_ptr<Entry>& entry) {
  MutexLock guard(mu_);
  if (!shutdown_) SubscribeLocked(entry);
}

void WatchHub::CancelWatchLocked(const std::shared_ptr<Entry>& entry) {
  if (entry->watch_id == 0) return;
  by_watch_id_.erase(entry->watch_id);
  if (stream_) {
    etcdserverpb::WatchRequest request;
    request.mutable_cancel_request()->set_watch_id(entry->watch_id);
    stream_->Write(std::move(request));
  }
  entry->watch_id = 0;
}

void WatchHub::PauseLocked(const std::shared_ptr<Entry>& entry, size_t keep) {
  // Events of one revision never span two responses (etcd splits them only with `fragment`,
  // which is not asked for), so resuming after the last kept response loses and repeats nothing.
  while (entry->responses.size() > keep) entry->responses.pop_back();
  if (entry->watch_id != 0) CountRestartLocked(*entry, "flow_control");
  CancelWatchLocked(entry);
  entry->resume_pending = true;
}

bool WatchHub::AnyWatchingLocked() const {
  for (const auto& [id, entry] : entries_) {
    if (entry->phase == Phase::kWatching) return true;
  }
  return false;
}

void WatchHub::EnsureStreamLocked(std::optional<std::chrono::milliseconds> wanted_delay) {
  if (stream_ || stream_starting_ || shutdown_) return;
  stream_starting_ = true;
  auto delay = wanted_delay ? *wanted_delay
               : stream_failures_ == 0
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
    MutexLock guard(mu_);
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
  MutexLock lock(mu_);
  stream_starting_ = false;
  if (!started.ok()) {
    ++stream_failures_;
    spdlog::warn("etcd watch stream: {}", started.status().ToString());
    if (IsAuthTokenError(started.status())) transport_->ForgetTokens();
    if (IsRefusal(started.status())) {
      // Logging in was refused: no watch can resume until the credentials work again.
      for (const auto& [id, entry] : entries_) {
        if (entry->phase == Phase::kWatching) SetStalledLocked(*entry, started.status().ToString());
      }
    }
    EnsureStreamLocked();
    return;
  }
  if (generation != stream_generation_ || shutdown_) {
    // Ended (or shut down) before we got here. OnStreamDone could not start the next stream
    // while this start was in progress, so it is started (with its backoff) from here.
    if (!shutdown_ && AnyWatchingLocked()) EnsureStreamLocked();
    lock.unlock();
    (*started)->Cancel();
    return;
  }
  stream_ = *started;
  last_heard_ = executor_->clock()->Now();
  progress_requested_ = false;
  heard_any_ = false;
  // The silence and answer checks start once the stream said something (OnResponse): until then
  // it may be waiting for its connection (etcd down), which they would only look at and leave
  // alone, waking every answer timeout for each hub of the process.
  for (const auto& [id, entry] : entries_) SubscribeLocked(entry);
}

void WatchHub::OnResponse(uint64_t generation, etcdserverpb::WatchResponse& response) {
  std::shared_ptr<WatchRequests> replaced;
  {
    MutexLock guard(mu_);
    if (generation != stream_generation_ || shutdown_) return;
    last_heard_ = executor_->clock()->Now();
    progress_requested_ = false;
    const bool first = !heard_any_;
    heard_any_ = true;
    replaced = OnResponseLocked(response);
    if (first && generation == stream_generation_ && stream_) StartAnswerChecksLocked();
  }
  if (replaced) replaced->Cancel();
}

std::shared_ptr<WatchRequests> WatchHub::OnResponseLocked(etcdserverpb::WatchResponse& response) {
  int64_t watch_id = response.watch_id();
  if (response.created()) {
    // The answer to the oldest create still waiting for one: etcd answers them in order, and
    // one it refused may come back without its watch id (-1).
    auto waiting = std::find(awaiting_created_.begin(), awaiting_created_.end(), watch_id);
    if (waiting == awaiting_created_.end() && !awaiting_created_.empty() &&
        by_watch_id_.find(watch_id) == by_watch_id_.end()) {
      waiting = awaiting_created_.begin();
      watch_id = *waiting;
    }
    if (waiting != awaiting_created_.end()) awaiting_created_.erase(waiting);
  }
  if (!response.canceled()) stream_failures_ = 0;
  auto it = by_watch_id_.find(watch_id);
  if (it == by_watch_id_.end()) {
    // Cancelled by us, or a stream-wide progress notification (etcd answers a progress request
    // so once every watch of the stream is caught up): each subscribed watch is up to date.
    if (!response.created() && !response.canceled() && response.events_size() == 0) {
      const auto now = executor_->clock()->WallNow();
      for (const auto& [id, watching] : by_watch_id_) {
        if (watching->phase == Phase::kWatching && watching->responses.empty()) {
          watching->Heard(now);
        }
      }
    }
    return nullptr;
  }
  std::shared_ptr<Entry> entry = it->second;
  if (response.canceled()) {
    by_watch_id_.erase(it);
    entry->watch_id = 0;
    if (entry->phase != Phase::kWatching) return nullptr;
    if (response.compact_revision() > 0) {
      spdlog::info("etcd watcher of '{}': revision {} compacted (now {}); listing again",
                   entry->prefix, entry->revision + 1, response.compact_revision());
      CountRestartLocked(*entry, "compaction");
      RestartListLocked(entry);
      return nullptr;
    }
    if (IsRefusal(response.cancel_reason()))
      return OnRefusedLocked(entry, response.cancel_reason());
    auto delay = internal::BackoffDelay(entry->failures++, kRetryBase, kRetryMax);
    spdlog::warn("etcd watcher of '{}' cancelled by the server ({}); retrying in {} ms",
                 entry->prefix, response.cancel_reason(), delay.count());
    std::weak_ptr<WatchHub> weak = weak_from_this();
    executor_->PostAfter(delay, [weak, entry] {
      if (auto self = weak.lock()) self->Resubscribe(entry);
    });
    return nullptr;
  }
  if (response.created()) {
    entry->refusals = 0;
    ClearStalledLocked(*entry);
    return nullptr;
  }
  if (entry->phase != Phase::kWatching) return nullptr;
  entry->failures = 0;
  entry->Heard(executor_->clock()->WallNow());
  if (response.events_size() == 0 && entry->responses.empty()) {
    // Progress notification: no event up to the header's revision is missing. Behind held
    // responses it waits its turn, as their events come before it.
    entry->revision = std::max(entry->revision, response.header().revision());
    return nullptr;
  }
  if (entry->responses.size() >= kMaxHeldResponses) {
    PauseLocked(entry, kMaxHeldResponses);  // this response comes again after the held ones
    return nullptr;
  }
  // Moved, not copied: the stream reads its next response into a cleared message.
  entry->responses.push_back(Entry::Held<etcdserverpb::WatchResponse>{
      std::make_unique<etcdserverpb::WatchResponse>(std::move(response)),
      entry->queue_metrics.Received()});
  if (!entry->applying && entry->phase == Phase::kWatching) {
    // The common case, nothing held before this response and room for it: its events are handed
    // over on this thread, which spares a hop through the executor (a thread woken per response).
    // Handing over never blocks. What does not fit is left to Apply, which waits for room.
    int budget = kDeliveryBatch;
    if (ApplyResponsesLocked(*entry, budget) == Progress::kDrained) return nullptr;
  }
  ScheduleApplyLocked(entry);
  return nullptr;
}

std::shared_ptr<WatchRequests> WatchHub::OnRefusedLocked(const std::shared_ptr<Entry>& entry,
                                                         const std::string& reason) {
  // The stream's token is the suspect: forget every token and open a new stream, which logs in
  // afresh; every watch of this one resumes there, from its own revision. At once the first
  // time; refused again with the fresh token, the watch cannot resume, and is retried with a
  // backoff.
  ++entry->refusals;
  transport_->ForgetTokens();
  CountRestartLocked(*entry, "auth");
  std::chrono::milliseconds delay(0);
  if (entry->refusals >= 2) {
    delay = internal::BackoffDelay(entry->refusals - 2, kRefusedRetryBase, kRefusedRetryMax);
    SetStalledLocked(*entry, absl::StrCat("refused by etcd after logging in anew: ", reason));
  }
  spdlog::warn(
      "etcd watcher of '{}' refused by etcd ({}); logging in again and opening a new watch "
      "stream in {} ms",
      entry->prefix, reason, delay.count());
  return ReplaceStreamLocked(delay);
}

void WatchHub::SetStalledLocked(Entry& entry, const std::string& why) {
  if (entry.stalled.empty()) {
    spdlog::error("etcd watcher of '{}' cannot resume: {}; it keeps retrying", entry.prefix, why);
    if (entry.stalled_gauge != nullptr) entry.stalled_gauge->Increment();
  }
  entry.stalled = why;
}

void WatchHub::ClearStalledLocked(Entry& entry) {
  if (entry.stalled.empty()) return;
  spdlog::info("etcd watcher of '{}' resumed", entry.prefix);
  entry.stalled.clear();
  if (entry.stalled_gauge != nullptr) entry.stalled_gauge->Decrement();
}

void WatchHub::CountRestartLocked(Entry& entry, std::string_view reason) {
  auto counted = entry.restarts.find(reason);
  if (counted == entry.restarts.end()) counted = entry.restarts.emplace(reason, 0).first;
  ++counted->second;
  if (metrics_ != nullptr) {
    metrics_->WatchRestarts(GetScopeFromKey(entry.prefix), reason).Increment();
  }
}

void WatchHub::OnStreamDone(uint64_t generation, const absl::Status& status) {
  MutexLock guard(mu_);
  if (generation != stream_generation_) return;
  ++stream_generation_;  // a StartStream still running for this generation drops its stream
  stream_ = nullptr;
  for (auto& [watch_id, entry] : by_watch_id_) {
    entry->watch_id = 0;
    CountRestartLocked(*entry, "stream_loss");
  }
  by_watch_id_.clear();
  awaiting_created_.clear();
  if (shutdown_ || !AnyWatchingLocked()) return;
  ++stream_failures_;
  spdlog::warn("etcd watch stream ended ({}); resuming {} watchers", status.ToString(),
               entries_.size());
  if (IsAuthTokenError(status)) transport_->ForgetTokens();
  EnsureStreamLocked();
}

void WatchHub::ScheduleApplyLocked(const std::shared_ptr<Entry>& entry) {
  if (entry->applying || entry->phase == Phase::kDone) return;
  entry->applying = true;
  std::weak_ptr<WatchHub> weak = weak_from_this();
  executor_->Post([weak, entry] {
    if (auto self = weak.lock()) self->Apply(entry);
  });
}

void WatchHub::Apply(const std::shared_ptr<Entry>& entry) {
  {
    MutexLock guard(mu_);
    if (entry->phase == Phase::kDone || shutdown_) {
      entry->applying = false;
      return;
    }
    int budget = kDeliveryBatch;
    Progress progress = Progress::kDrained;
    if (entry->phase == Phase::kListing) progress = ApplyPagesLocked(*entry, budget);
    if (progress == Progress::kDrained && entry->phase == Phase::kListing) {
      RequestPageIfDueLocked(entry);
    } else if (progress == Progress::kDrained) {
      progress = ApplyResponsesLocked(*entry, budget);
    }
    switch (progress) {
      case Progress::kDrained:
        entry->applying = false;
        RequestPageIfDueLocked(entry);
        if (entry->resume_pending) SubscribeLocked(entry);
        return;
      case Progress::kYield: {
        RequestPageIfDueLocked(entry);
        std::weak_ptr<WatchHub> weak = weak_from_this();
        executor_->Post([weak, entry] {
          if (auto self = weak.lock()) self->Apply(entry);
        });
        return;
      }
      case Progress::kFull:
        // Stop taking events: what the stream sends meanwhile is asked for again later.
        if (entry->phase == Phase::kWatching) PauseLocked(entry, 1);
        RequestPageIfDueLocked(entry);
        break;
    }
  }
  // Full. `applying` stays set until the consumer made room (or stopped).
  if (internal::WatcherProducer(*entry->watcher).Stopped() || entry->ctx.Done()) {
    Finish(entry);
    return;
  }
  std::weak_ptr<WatchHub> weak = weak_from_this();
  // Outside mu_: the hook runs at once when there is room already.
  internal::WatcherProducer(*entry->watcher).NotifyWhenSpace([weak, entry] {
    std::shared_ptr<WatchHub> self = weak.lock();
    if (!self) return;
    // On the consumer's thread: after Shutdown the executor may be gone.
    MutexLock guard(self->mu_);
    if (self->shutdown_) return;
    self->executor_->Post([weak, entry] {
      if (auto self = weak.lock()) self->Apply(entry);
    });
  });
}

WatchHub::Progress WatchHub::ApplyPagesLocked(Entry& entry, int& budget) {
  Entry::TimePoint received = entry.last_received;
  // A key that vanished while the watcher was away comes with the last value it was told, as
  // in the in-memory backend.
  auto emit = [&](KeyValueEvent& event) { return entry.TryHandOver(event, received); };
  while (!entry.pages.empty()) {
    Entry::Held<etcdserverpb::RangeResponse>& page = entry.pages.front();
    received = entry.last_received = page.received;
    if (!entry.diff) entry.diff.emplace(entry.known, entry.pager.revision());
    auto& kvs = *page.message->mutable_kvs();
    for (; entry.next_item < kvs.size(); ++entry.next_item) {
      if (budget-- <= 0) return Progress::kYield;
      mvccpb::KeyValue& kv = *kvs.Mutable(entry.next_item);
      // The value moves on to the consumer (unless the watcher keeps values): the page is read
      // once, and its memory goes with its values instead of staying until the page is done.
      if (!entry.diff->Listed(kv.key(), kv.mod_revision(), std::move(*kv.mutable_value()), emit)) {
        return Progress::kFull;
      }
    }
    entry.pages.pop_front();
    entry.next_item = 0;
  }
  if (!entry.last_page_received) return Progress::kDrained;  // the next page is on its way
  if (!entry.diff) entry.diff.emplace(entry.known, entry.pager.revision());
  if (!entry.diff->Finish(emit)) return Progress::kFull;
  if (!entry.list_done_sent) {
    KeyValueEvent list_done{EventType::kListDone, "", "", entry.pager.revision()};
    if (!emit(list_done)) return Progress::kFull;
    entry.list_done_sent = true;
    if (list_done_hook_) list_done_hook_();
  }
  entry.diff.reset();
  entry.revision = entry.pager.revision();
  entry.phase = Phase::kWatching;
  entry.resume_pending = true;  // Apply subscribes
  return Progress::kDrained;
}

WatchHub::Progress WatchHub::ApplyResponsesLocked(Entry& entry, int& budget) {
  Entry::TimePoint received{};
  auto emit = [&](KeyValueEvent& event) { return entry.TryHandOver(event, received); };
  while (!entry.responses.empty()) {
    Entry::Held<etcdserverpb::WatchResponse>& held = entry.responses.front();
    received = held.received;
    etcdserverpb::WatchResponse& response = *held.message;
    if (response.events_size() == 0) {
      entry.revision = std::max(entry.revision, response.header().revision());
    }
    for (; entry.next_item < response.events_size(); ++entry.next_item) {
      if (budget-- <= 0) return Progress::kYield;
      mvccpb::Event& event = *response.mutable_events(entry.next_item);
      mvccpb::KeyValue& kv = *event.mutable_kv();
      const bool taken = event.type() == mvccpb::Event::PUT
                             ? entry.known.ApplyPut(kv.key(), kv.mod_revision(),
                                                    std::move(*kv.mutable_value()), emit)
                             : entry.known.ApplyDelete(kv.key(), kv.mod_revision(), emit);
      if (!taken) return Progress::kFull;
      entry.revision = std::max(entry.revision, kv.mod_revision());
    }
    entry.responses.pop_front();
    entry.next_item = 0;
  }
  return Progress::kDrained;
}

void WatchHub::Finish(const std::shared_ptr<Entry>& entry) {
  std::shared_ptr<WatchRequests> stream;
  uint64_t callback = 0;
  {
    MutexLock guard(mu_);
    if (entry->phase == Phase::kDone) return;
    entry->phase = Phase::kDone;
    entry->diff.reset();
    entry->pages.clear();
    entry->responses.clear();
    entry->known.Clear();
    ClearStalledLocked(*entry);
    entries_.erase(entry->id);
    CancelWatchLocked(entry);
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
    MutexLock guard(mu_);
    shutdown_ = true;
    for (const auto& [id, entry] : entries_) entries.push_back(entry);
    stream = stream_;
  }
  for (const auto& entry : entries) {
    uint64_t callback = 0;
    {
      MutexLock guard(mu_);
      entry->phase = Phase::kDone;
      entry->diff.reset();
      entry->pages.clear();
      entry->responses.clear();
      ClearStalledLocked(*entry);
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
  MutexLock guard(mu_);
  return entries_.size();
}

std::vector<WatchFreshness> WatchHub::Freshness() const {
  MutexLock guard(mu_);
  std::vector<WatchFreshness> watches;
  watches.reserve(entries_.size());
  for (const auto& [id, entry] : entries_) {
    WatchFreshness& watch = watches.emplace_back();
    watch.prefix = entry->prefix;
    watch.last_heard = entry->last_heard;
    watch.list_pages = entry->list_pages;
    watch.restarts.insert(entry->restarts.begin(), entry->restarts.end());
    watch.stalled = entry->stalled;
  }
  return watches;
}

std::vector<std::string> WatchHub::StalledWatchers() const {
  MutexLock guard(mu_);
  std::vector<std::string> stalled;
  for (const auto& [id, entry] : entries_) {
    if (!entry->stalled.empty())
      stalled.push_back(absl::StrCat(entry->prefix, " (", entry->stalled, ")"));
  }
  return stalled;
}

}  // namespace kvstore::etcd

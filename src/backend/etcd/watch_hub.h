// ListAndWatch for the etcd backend. Every watcher of a backend instance shares one bidirectional
// Watch stream; its list is paginated at one pinned revision and fetched page by page as the
// consumer keeps up. No thread per watcher: transport threads only hand what they received to the
// watcher's entry, and one function (Apply, on the backend's small executor) turns it into the
// watcher's events.
//
// Per watcher: list (kCreate per key) → kListDone → watch from the list revision + 1. A broken
// stream resumes every watch from its last revision + 1; a compacted revision re-lists and emits
// the difference to what the watcher had (internal::RelistDiff: kModify changed, kCreate new,
// kDelete vanished).
//
// Flow control: the watcher's own capacity is the only buffer of events. Beyond it the hub holds
// only what it received as it received it: while listing, the page being handed over and at most
// one page ahead; while watching, the responses not yet handed over, and once the watcher is full
// only the one being handed over. A full watcher stops taking events: its watch is cancelled on
// the stream, and when the consumer made room and the held response is handed over, it is
// subscribed again from its last revision + 1. So a consumer that does not read stalls nobody
// else and costs a bounded amount of memory.
//
// Credentials: a stream carries the token it was opened with, and etcd checks it at every watch
// request on the stream. A request refused for its credentials (the token expired, or etcd
// restarted and forgot its simple tokens) replaces the stream: the tokens are forgotten, a new
// stream logs in afresh, and every watch resumes there. A request etcd does not answer within the
// answer timeout (etcd 3.4 stops reading a stream after refusing one) replaces it too, and so does
// a stream silent for that long that does not answer a progress request within it either (a
// member frozen, or cut off without the connection noticing): the new stream may go to another
// member. A watch
// refused again with a fresh token cannot resume (its permission was taken away): it says so, in
// the log, in StalledWatchers() (the backend's status) and in cilium_kvstore_watchers_stalled,
// and keeps retrying.
#ifndef KVSTORE_BACKEND_ETCD_WATCH_HUB_H_
#define KVSTORE_BACKEND_ETCD_WATCH_HUB_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/etcd/executor.h"
#include "backend/etcd/transport.h"
#include "kvstore/backend.h"
#include "kvstore/backend_metrics.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

class WatchHub : public std::enable_shared_from_this<WatchHub> {
 public:
  // `page_size`: keys per list page (before the byte bound shrinks it; 0: one unpaginated request,
  // as ListPager). `metrics` (may be null;
  // must outlive this) receives how long events wait for their watcher. `transport` and
  // `executor` must outlive this.
  // `answer_timeout`: how long etcd may take to answer a watch request before the stream is
  // taken for stuck and replaced.
  WatchHub(Transport* transport, Executor* executor, int64_t page_size,
           BackendMetrics* metrics = nullptr,
           std::chrono::milliseconds answer_timeout = std::chrono::seconds(15));
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // `hook` runs (under the hub's lock: it must be quick and not call the hub) each time a
  // watcher received its initial list. Set before the first ListAndWatch.
  void SetListDoneHook(std::function<void()> hook) { list_done_hook_ = std::move(hook); }

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity, const WatchOptions& options = {});

  // Closes every watcher and the stream. Idempotent.
  void Shutdown();

  size_t NumWatchers() const;
  // How fresh each watcher's view is, in the order they were opened.
  std::vector<WatchFreshness> Freshness() const;
  // The watchers that cannot resume, each as "PREFIX (why)"; empty when every one can.
  std::vector<std::string> StalledWatchers() const;

 private:
  struct Entry;
  enum class Phase { kListing, kWatching, kDone };
  // How far one run of Apply got.
  enum class Progress {
    kDrained,  // everything held was handed over
    kYield,    // a batch was handed over; more is left
    kFull,     // the watcher refused an event
  };

  void FetchPage(const std::shared_ptr<Entry>& entry, uint64_t list_generation);
  void OnPage(const std::shared_ptr<Entry>& entry, uint64_t list_generation,
              const absl::Status& status, etcdserverpb::RangeResponse& response);
  void RestartListLocked(const std::shared_ptr<Entry>& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RequestPageIfDueLocked(const std::shared_ptr<Entry>& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SubscribeLocked(const std::shared_ptr<Entry>& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Resubscribe(const std::shared_ptr<Entry>& entry);
  // Stops the watch on the stream, keeping the first `keep` held responses; the entry subscribes
  // again once it handed them over.
  void PauseLocked(const std::shared_ptr<Entry>& entry, size_t keep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CancelWatchLocked(const std::shared_ptr<Entry>& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Opens a stream unless one is open or opening: after `delay`, by default after the backoff
  // of the consecutive stream failures.
  void EnsureStreamLocked(std::optional<std::chrono::milliseconds> delay = std::nullopt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the current stream (its watches resume on a new one, opened after `delay`) and returns
  // it, for the caller to cancel once it released mu_.
  std::shared_ptr<WatchRequests> ReplaceStreamLocked(std::chrono::milliseconds delay)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces the stream if watch `watch_id` of stream `generation` is still unanswered.
  void CheckAnswered(uint64_t generation, int64_t watch_id);
  // CheckAnswered for `watch_id` on the current stream, an answer timeout from now.
  void ScheduleAnswerCheckLocked(int64_t watch_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Once the current stream first said something: starts its silence check and the answer check
  // of each watch still waiting for its answer.
  void StartAnswerChecksLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every answer timeout while stream `generation` is open: asks a silent stream for progress,
  // and replaces one that did not answer that either.
  void ScheduleSilenceCheckLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckSilence(uint64_t generation);
  void StartStream();
  void OnResponse(uint64_t generation, etcdserverpb::WatchResponse& response);
  // OnResponse under mu_; returns a stream to cancel once mu_ is released.
  std::shared_ptr<WatchRequests> OnResponseLocked(etcdserverpb::WatchResponse& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The entry's watch was refused for credentials or permission (`reason`, etcd's words).
  std::shared_ptr<WatchRequests> OnRefusedLocked(const std::shared_ptr<Entry>& entry,
                                                 const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reports that the entry cannot resume (once per episode), or that it resumed.
  void SetStalledLocked(Entry& entry, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearStalledLocked(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountRestartLocked(Entry& entry, std::string_view reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStreamDone(uint64_t generation, const absl::Status& status);
  void ScheduleApplyLocked(const std::shared_ptr<Entry>& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The one place where what the entry holds becomes the watcher's events.
  void Apply(const std::shared_ptr<Entry>& entry);
  Progress ApplyPagesLocked(Entry& entry, int& budget) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Progress ApplyResponsesLocked(Entry& entry, int& budget) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(const std::shared_ptr<Entry>& entry);
  bool AnyWatchingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Transport* const transport_;
  Executor* const executor_;
  const int64_t page_size_;
  BackendMetrics* const metrics_;
  const std::chrono::milliseconds answer_timeout_;
  std::function<void()> list_done_hook_;  // set before use, then only read

  // Guards everything below and the mutable state of every Entry. Taken before a watcher's lock,
  // never while waiting for one (watchers are only offered events, never waited on).
  mutable Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_entry_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  int64_t next_watch_id_ ABSL_GUARDED_BY(mu_) =
      1;  // never reused on a stream, so late answers cannot be mistaken
  std::map<int64_t, std::shared_ptr<Entry>> by_watch_id_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<WatchRequests> stream_ ABSL_GUARDED_BY(mu_);
  uint64_t stream_generation_ ABSL_GUARDED_BY(mu_) = 0;
  // The watch ids whose create request was written on stream_ and not answered yet, oldest
  // first: etcd answers them in order, a refused one (etcd 3.5) with watch id -1.
  std::deque<int64_t> awaiting_created_ ABSL_GUARDED_BY(mu_);
  // When stream_ last said anything, and whether it was asked for progress since.
  Clock::time_point last_heard_ ABSL_GUARDED_BY(mu_){};  // on the executor's clock
  bool progress_requested_ ABSL_GUARDED_BY(mu_) = false;
  // Whether stream_ said anything yet. Until then it may still be waiting for its connection
  // (etcd unreachable): gRPC's keepalive and connection failures end it, and the checks above
  // leave it alone rather than replace it again and again while etcd is down; they are not even
  // scheduled until it first speaks, so that a process with many hubs stays asleep meanwhile.
  bool heard_any_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_starting_ ABSL_GUARDED_BY(mu_) = false;
  int stream_failures_ ABSL_GUARDED_BY(mu_) = 0;  // consecutive, for the reconnect backoff
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_WATCH_HUB_H_

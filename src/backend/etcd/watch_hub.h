// ListAndWatch for the etcd backend. Every watcher of a backend instance shares one bidirectional
// Watch stream; its list is paginated at one pinned revision and fetched page by page as the
// consumer keeps up. Events are delivered by the backend's small executor, each watcher with its
// own queue, so a consumer that does not read stalls nobody else.
//
// Per watcher: list (kCreate per key) → kListDone → watch from the list revision + 1. A broken
// stream resumes every watch from its last revision + 1; a compacted revision re-lists and emits
// the difference to what the watcher had (kModify changed, kCreate new, kDelete vanished).
#ifndef KVSTORE_BACKEND_ETCD_WATCH_HUB_H_
#define KVSTORE_BACKEND_ETCD_WATCH_HUB_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "backend/etcd/executor.h"
#include "backend/etcd/transport.h"
#include "kvstore/context.h"
#include "kvstore/events.h"
#include "kvstore/backend_metrics.h"

namespace kvstore::etcd {

class WatchHub : public std::enable_shared_from_this<WatchHub> {
 public:
  // `page_size`: keys per list page (before the byte bound shrinks it). `metrics` (may be null;
  // must outlive this) receives how long events wait for their watcher.
  WatchHub(Transport* transport, Executor* executor, int64_t page_size,
           BackendMetrics* metrics = nullptr);
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  std::shared_ptr<Watcher> ListAndWatch(const Context& ctx, std::string_view prefix,
                                        size_t capacity);

  // Closes every watcher and the stream. Idempotent.
  void Shutdown();

  size_t NumWatchers() const;

 private:
  struct Entry;
  enum class Phase { kListing, kWatching, kDone };

  void FetchPage(const std::shared_ptr<Entry>& entry);
  void OnPage(const std::shared_ptr<Entry>& entry, const absl::Status& status,
              etcdserverpb::RangeResponse& response);
  void RestartListLocked(const std::shared_ptr<Entry>& entry);
  void SubscribeLocked(const std::shared_ptr<Entry>& entry);
  void Resubscribe(const std::shared_ptr<Entry>& entry);
  void EnsureStreamLocked();
  void StartStream();
  void OnResponse(uint64_t generation, etcdserverpb::WatchResponse& response);
  void OnStreamDone(uint64_t generation, const absl::Status& status);
  void ScheduleDeliveryLocked(const std::shared_ptr<Entry>& entry);
  void RequestPageIfDueLocked(const std::shared_ptr<Entry>& entry);
  void Deliver(const std::shared_ptr<Entry>& entry);
  void Finish(const std::shared_ptr<Entry>& entry);
  bool AnyWatchingLocked() const;

  Transport* const transport_;
  Executor* const executor_;
  const int64_t page_size_;
  BackendMetrics* const metrics_;

  mutable std::mutex mu_;  // guards everything below and the mutable state of every Entry
  bool shutdown_ = false;
  uint64_t next_entry_id_ = 1;
  std::map<uint64_t, std::shared_ptr<Entry>> entries_;
  int64_t next_watch_id_ = 1;  // never reused on a stream, so late answers cannot be mistaken
  std::map<int64_t, std::shared_ptr<Entry>> by_watch_id_;
  std::shared_ptr<WatchRequests> stream_;
  uint64_t stream_generation_ = 0;
  bool stream_starting_ = false;
  int stream_failures_ = 0;  // consecutive, for the reconnect backoff
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_WATCH_HUB_H_

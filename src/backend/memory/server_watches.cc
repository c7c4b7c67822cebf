// The in-memory server's watches: one thread per watch replays the history to its watcher,
// re-listing when the history it needs is gone.
#include <utility>

#include "backend/memory/server.h"
#include "core/relist_diff.h"
#include "core/watcher_producer.h"

namespace kvstore::memory::internal {

std::shared_ptr<Watcher> InMemoryServer::ListAndWatch(uint64_t session_id, const Context& ctx,
                                                      std::string_view prefix, size_t capacity) {
  auto watcher = std::make_shared<Watcher>(std::string(prefix), capacity);
  if (ctx.Done()) {
    watcher->Close();
    return watcher;
  }
  auto [watch_ctx, cancel] = WithCancel(ctx);
  kvstore::internal::WatcherProducer(*watcher).SetStopHook(cancel);

  std::vector<std::thread> finished;
  bool started = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto session_it = sessions_.find(session_id);
    if (!shutdown_ && session_it != sessions_.end() && session_it->second.kept_alive) {
      auto watch = std::make_unique<Watch>();
      watch->id = next_watch_id_++;
      watch->session_id = session_id;
      watch->prefix = std::string(prefix);
      watch->watcher = watcher;
      watch->ctx = watch_ctx;
      watch->cancel = cancel;
      watch->next_revision = revision_ + 1;
      watch->queue_metrics = kvstore::internal::EventsQueueRecorder(opts_.metrics.get(), prefix);
      Watch* raw = watch.get();
      try {
        raw->thread =
            std::thread([self = shared_from_this(), raw, snapshot = SnapshotLocked(prefix),
                         revision = revision_]() mutable {
              self->RunWatch(raw, std::move(snapshot), revision);
            });
        watches_.emplace(raw->id, std::move(watch));
        started = true;
      } catch (const std::system_error&) {
        // Out of threads: the watcher closes at once, as if its context were done.
      }
    }
    finished = TakeFinishedWatchThreadsLocked();
  }
  for (std::thread& thread : finished) thread.join();
  if (!started) {
    cancel();
    watcher->Close();
  }
  return watcher;
}

void InMemoryServer::RunWatch(Watch* watch, std::vector<std::pair<std::string, KeyRecord>> initial,
                              int64_t list_revision) {
  Watcher& watcher = *watch->watcher;
  const Context& ctx = watch->ctx;
  // Emit blocks until the consumer takes the event, so it refuses only when the watch ends.
  auto emit = [watch](KeyValueEvent& event) { return Emit(watch, std::move(event)); };
  kvstore::internal::KnownKeys known(watch->prefix);
  // The first listing is the difference to an empty view: a kCreate per key.
  bool ok = ListInto(known, initial, list_revision, emit);
  initial = {};
  if (ok) ok = Emit(watch, KeyValueEvent{EventType::kListDone, "", "", list_revision});

  while (ok) {
    std::vector<std::pair<int64_t, Change>> batch;
    std::vector<std::pair<std::string, KeyRecord>> snapshot;
    bool relist = false;
    int64_t relist_revision = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ctx.WaitOn(lock, watch->cv, [&] { return shutdown_ || watch->next_revision <= revision_; });
      if (shutdown_ || ctx.Done()) break;
      if (watch->next_revision <= history_.compacted_revision()) {
        // The revisions this watcher still needs are gone: compare with the present instead.
        relist = true;
        relist_revision = revision_;
        snapshot = SnapshotLocked(watch->prefix);
        watch->next_revision = revision_ + 1;
      } else {
        size_t index = history_.Index(watch->next_revision);
        size_t scanned = 0;
        while (index < history_.size() && scanned < kMaxWatchBatchRevisions &&
               batch.size() < kMaxWatchBatchEvents) {
          const HistoryEntry& entry = history_.entry(index);
          for (const Change& change : entry.changes) {
            if (change.key.starts_with(watch->prefix)) batch.emplace_back(entry.revision, change);
          }
          ++index;
          ++scanned;
        }
        watch->next_revision = history_.compacted_revision() + 1 + static_cast<int64_t>(index);
      }
    }
    if (relist) {
      ok = ListInto(known, snapshot, relist_revision, emit);
      continue;
    }
    for (auto& [revision, change] : batch) {
      ok = change.deleted ? known.ApplyDelete(change.key, revision, emit)
                          : known.ApplyPut(change.key, revision, std::move(change.value), emit);
      if (!ok) break;
    }
  }

  watcher.Close();
  std::lock_guard<std::mutex> lock(mu_);
  watch->finished = true;
  finished_watches_.push_back(watch->id);
  maintenance_cv_.notify_all();
}

bool InMemoryServer::ListInto(kvstore::internal::KnownKeys& known,
                              const std::vector<std::pair<std::string, KeyRecord>>& snapshot,
                              int64_t revision, kvstore::internal::EmitFn emit) {
  kvstore::internal::RelistDiff diff(known, revision);
  for (const auto& [key, record] : snapshot) {
    if (!diff.Listed(key, record.mod_revision, record.value, emit)) return false;
  }
  return diff.Finish(emit);
}

bool InMemoryServer::Emit(Watch* watch, KeyValueEvent event) {
  const EventType type = event.type;
  const auto received = watch->queue_metrics.Received();
  if (!watch->watcher->Emit(std::move(event), watch->ctx)) return false;
  watch->queue_metrics.Accepted(type, received);
  return true;
}

}  // namespace kvstore::memory::internal

// The in-memory server's watches: each a pump on its own strand that replays the history to its
// watcher, re-listing when the history it needs is gone, and never blocks: a full watcher wakes
// the pump when it has room again, a commit that concerns a caught-up watch wakes it.
#include <algorithm>
#include <shared_mutex>
#include <utility>

#include "backend/memory/server.h"
#include "core/planted_bugs.h"
#include "core/relist_diff.h"
#include "core/watcher_producer.h"
#include "kvstore/mutex.h"

namespace kvstore::memory::internal {

using kvstore::internal::Planted;
using kvstore::internal::PlantedBug;
using kvstore::internal::WatcherProducer;

std::shared_ptr<Watcher> InMemoryServer::ListAndWatch(uint64_t session_id, const Context& ctx,
                                                      std::string_view prefix, size_t capacity) {
  auto watcher = std::make_shared<Watcher>(std::string(prefix), capacity);
  if (ctx.Done()) {
    watcher->Close();
    return watcher;
  }
  auto [watch_ctx, cancel] = WithCancel(ctx);
  // The consumer's Stop returns once the watcher is closed: closed here, on the consumer's
  // thread, so that Stop never waits for the pump (which may need the very thread calling
  // Stop). The pump, woken by the cancel, then forgets the watch. A raw pointer: the hook runs
  // inside the watcher's own Stop, and a shared one would keep the watcher alive forever.
  WatcherProducer(*watcher).SetStopHook([cancel = cancel, raw = watcher.get()] {
    cancel();
    raw->Close();
  });

  auto watch = std::make_shared<Watch>(std::string(prefix), executor_);
  watch->session_id = session_id;
  watch->watcher = watcher;
  watch->ctx = watch_ctx;
  watch->cancel = cancel;
  watch->queue_metrics = kvstore::internal::EventsQueueRecorder(opts_.metrics.get(), prefix);
  std::vector<std::pair<std::string, KeyRecord>> snapshot;
  int64_t list_revision = 0;
  {
    MutexLock lock(mu_);
    auto session_it = sessions_.find(session_id);
    if (shutdown_ || session_it == sessions_.end() || !session_it->second.kept_alive) {
      watch = nullptr;
    } else {
      watch->id = next_watch_id_++;
      watch->next_revision = revision_ + 1;
      list_revision = revision_;
      snapshot = SnapshotLocked(prefix);
      watches_.emplace(watch->id, watch);
    }
  }
  if (watch == nullptr) {
    cancel();
    watcher->Close();
    return watcher;
  }
  // The first listing is the difference to an empty view: a kCreate per key, then kListDone. Made
  // here, before the first pump runs, so that it is pending before any commit can wake the pump.
  auto make = [&watch](KeyValueEvent& event) {
    watch->pending.emplace_back(std::move(event), watch->queue_metrics.Received());
    return true;
  };
  (void)ListInto(watch->known, snapshot, list_revision, make);
  watch->pending.emplace_back(KeyValueEvent{EventType::kListDone, "", "", list_revision},
                              watch->queue_metrics.Received());
  std::weak_ptr<InMemoryServer> weak_self = weak_from_this();
  std::weak_ptr<Watch> weak_watch = watch;
  // The end of the watch (Stop, the caller's context, Close, Shutdown) wakes the pump to finish.
  const uint64_t callback = watch_ctx.AddCallback([weak_self, weak_watch] {
    auto self = weak_self.lock();
    auto w = weak_watch.lock();
    if (self && w) self->WakeWatch(w);
  });
  {
    MutexLock lock(mu_);
    watch->ctx_callback = callback;
  }
  WakeWatch(watch);
  return watcher;
}

void InMemoryServer::WakeWatch(const std::shared_ptr<Watch>& watch) {
  watch->strand.Post([self = shared_from_this(), watch] { self->Pump(watch); });
}

void InMemoryServer::Pump(const std::shared_ptr<Watch>& watch) {
  WatcherProducer producer(*watch->watcher);
  while (true) {
    while (!watch->pending.empty()) {
      if (watch->ctx.Done()) return FinishWatch(watch);
      auto& [event, received] = watch->pending.front();
      const EventType type = event.type;
      if (!producer.TryEmit(event)) {
        if (producer.Stopped() || producer.Closed()) return FinishWatch(watch);
        // Full: the consumer taking events wakes the pump (at once if it already made room).
        std::weak_ptr<InMemoryServer> weak_self = weak_from_this();
        producer.NotifyWhenSpace([weak_self, watch] {
          if (auto self = weak_self.lock()) self->WakeWatch(watch);
        });
        return;
      }
      if (watch->queue_metrics.enabled()) {
        ReaderMutexLock gate(metrics_mu_);
        if (!metrics_off_) watch->queue_metrics.Accepted(type, received);
      }
      watch->pending.pop_front();
    }
    if (watch->ctx.Done()) return FinishWatch(watch);

    std::vector<std::pair<int64_t, Change>> batch;
    std::vector<std::pair<std::string, KeyRecord>> snapshot;
    bool relist = false;
    int64_t relist_revision = 0;
    bool shut_down = false;
    {
      MutexLock lock(mu_);
      shut_down = shutdown_;
      if (!shut_down && watch->next_revision > revision_) {
        watch->parked = true;  // CommitLocked wakes the pump for a change under the prefix
        return;
      }
      if (shut_down) {
        // FinishWatch takes mu_: below, once it is released.
      } else if (watch->next_revision <= history_.compacted_revision()) {
        // The revisions this watcher still needs are gone: compare with the present instead.
        relist = true;
        relist_revision = revision_;
        snapshot = SnapshotLocked(watch->prefix);
        watch->next_revision = revision_ + (Planted(PlantedBug::kResumeWrongRevision) ? 2 : 1);
        if (Planted(PlantedBug::kResumeBehind)) {
          // Replays revisions the listing already covered, as a watch resumed on a lagging
          // member would.
          watch->next_revision = std::max(history_.compacted_revision() + 1, revision_ - 3);
        }
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
        if (Planted(PlantedBug::kDropLastEvent) && batch.size() > 1) batch.pop_back();
      }
    }
    if (shut_down) return FinishWatch(watch);
    auto make = [&watch](KeyValueEvent& event) {
      watch->pending.emplace_back(std::move(event), watch->queue_metrics.Received());
      return true;
    };
    if (relist) {
      if (Planted(PlantedBug::kSkipRelistDiff)) {
        (void)ListInto(watch->known, snapshot, relist_revision, [&](KeyValueEvent& event) {
          return event.type == EventType::kDelete ? true : make(event);
        });
        continue;
      }
      (void)ListInto(watch->known, snapshot, relist_revision, make);
      continue;
    }
    for (auto& [revision, change] : batch) {
      // `make` never refuses an event, so neither call fails.
      if (change.deleted) {
        (void)watch->known.ApplyDelete(change.key, revision, make);
      } else {
        (void)watch->known.ApplyPut(change.key, revision, std::move(change.value), make);
      }
    }
  }
}

void InMemoryServer::FinishWatch(const std::shared_ptr<Watch>& watch) {
  watch->pending.clear();
  watch->watcher->Close();
  uint64_t callback;
  {
    MutexLock lock(mu_);
    if (watch->finished) return;
    watch->finished = true;
    watches_.erase(watch->id);
    callback = std::exchange(watch->ctx_callback, 0);
  }
  watch->ctx.RemoveCallback(callback);
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

}  // namespace kvstore::memory::internal

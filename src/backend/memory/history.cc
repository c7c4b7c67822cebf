#include "backend/memory/history.h"

#include <algorithm>
#include <utility>

namespace kvstore::memory::internal {
namespace {

// Bookkeeping cost of a history entry beyond its keys and values.
constexpr size_t kHistoryEntryOverheadBytes = 64;

}  // namespace

void History::Append(int64_t revision, std::vector<Change> changes) {
  HistoryEntry entry;
  entry.revision = revision;
  entry.bytes = kHistoryEntryOverheadBytes;
  for (const Change& change : changes) entry.bytes += change.key.size() + change.value->size();
  entry.changes = std::move(changes);
  bytes_ += entry.bytes;
  entries_.push_back(std::move(entry));
  while (!entries_.empty() && (entries_.size() > max_revisions_ || bytes_ > max_bytes_)) {
    DropFront();
  }
}

void History::DropBefore(int64_t needed) {
  while (!entries_.empty() && entries_.front().revision < needed) DropFront();
}

void History::CompactThrough(int64_t revision) {
  while (!entries_.empty() && entries_.front().revision <= revision) DropFront();
  compacted_revision_ = std::max(compacted_revision_, revision);
}

void History::DropFront() {
  compacted_revision_ = entries_.front().revision;
  bytes_ -= entries_.front().bytes;
  entries_.pop_front();
}

}  // namespace kvstore::memory::internal

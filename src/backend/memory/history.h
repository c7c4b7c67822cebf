// The revisions an in-memory server keeps for its watchers to replay: each with the changes it
// made, from the one after the compacted revision on, bounded in count and in bytes.
#ifndef KVSTORE_BACKEND_MEMORY_HISTORY_H_
#define KVSTORE_BACKEND_MEMORY_HISTORY_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "core/relist_diff.h"

namespace kvstore::memory::internal {

using kvstore::internal::SharedValue;

// One key's change within a revision. For a delete, `value` is the last value.
struct Change {
  std::string key;
  SharedValue value;
  bool deleted = false;
};

struct HistoryEntry {
  int64_t revision = 0;
  std::vector<Change> changes;
  size_t bytes = 0;
};

// Thread-compatible: the server's mutex guards it.
class History {
 public:
  // At most `max_revisions` revisions and `max_bytes` bytes are kept; older ones are forgotten
  // (watchers still behind them re-list).
  History(size_t max_revisions, size_t max_bytes)
      : max_revisions_(max_revisions), max_bytes_(max_bytes) {}
  History(const History&) = delete;
  History& operator=(const History&) = delete;

  // Records `changes` as `revision`, the one after the last appended, then forgets the oldest
  // revisions beyond the bounds (possibly this one too).
  void Append(int64_t revision, std::vector<Change> changes);
  // Forgets the revisions before `needed`: no watcher will read them.
  void DropBefore(int64_t needed);
  // Forgets every revision up to `revision` and marks them compacted.
  void CompactThrough(int64_t revision);

  // Every revision after this one (up to the last appended) is held.
  int64_t compacted_revision() const { return compacted_revision_; }
  // The entries from `revision` on, by position: entry(Index(revision) + i).
  // REQUIRES: revision > compacted_revision().
  size_t Index(int64_t revision) const {
    return static_cast<size_t>(revision - compacted_revision_ - 1);
  }
  size_t size() const { return entries_.size(); }
  const HistoryEntry& entry(size_t index) const { return entries_[index]; }

 private:
  void DropFront();

  const size_t max_revisions_;
  const size_t max_bytes_;
  int64_t compacted_revision_ = 1;  // like etcd: an empty store is at revision 1
  std::deque<HistoryEntry> entries_;
  size_t bytes_ = 0;
};

}  // namespace kvstore::memory::internal

#endif  // KVSTORE_BACKEND_MEMORY_HISTORY_H_

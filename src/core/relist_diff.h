// What a watcher's consumer has been told, and the events that bring it up to date: the live
// changes of a watch, and after a broken watch (compacted revision, lost history) the difference
// between that view and a fresh listing. Shared by the backends so that every one of them reports
// creates, modifies and deletes by the same rules (SPEC "ListAndWatch").
//
// Both work with a producer that cannot always take an event (a bounded watcher that is full):
// each event is handed to an EmitFn, and only once it accepted the event is the view updated. A
// refused event leaves everything as it was, so calling again with the same input continues
// exactly there, without a duplicate or a gap. A producer that blocks until the consumer takes
// the event instead simply never refuses (except when the watch ends).
#ifndef KVSTORE_CORE_RELIST_DIFF_H_
#define KVSTORE_CORE_RELIST_DIFF_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/btree_map.h"
#include "absl/functional/function_ref.h"
#include "kvstore/events.h"

namespace kvstore::internal {

// An immutable value that a backend's key space, history and watcher views may share.
using SharedValue = std::shared_ptr<const std::string>;

// Offers `event` to the consumer: true when it took it (it may move from `event`), false when it
// cannot take it now, leaving `event` as it was.
using EmitFn = absl::FunctionRef<bool(KeyValueEvent& event)>;

// A value the caller gives up (see the std::string&& overloads below): moved into the event.
struct OwnedValue {
  std::string& value;
};

// The keys one watcher's consumer was told exist, each with the mod revision and value it was told
// last: decides kCreate against kModify, which deletes to report (with the last value), and the
// difference after a re-list. Keys are absolute (with the watched prefix); they are stored without
// the prefix, which keeps most of them short and inline. Not thread-safe: one producer owns it.
class KnownKeys {
 public:
  struct Known {
    int64_t mod_revision = 0;
    SharedValue value;  // null when not kept
  };

  // REQUIRES: every key passed in starts with `prefix`. Without `keep_values` only the mod
  // revisions are kept, and deletes come without a value (WatchOptions::delete_values).
  explicit KnownKeys(std::string prefix = "", bool keep_values = true);
  KnownKeys(const KnownKeys&) = delete;
  KnownKeys& operator=(const KnownKeys&) = delete;

  // A live put of `key` at `revision`: kCreate when the key is unknown, else kModify, with
  // `value`; recorded once `emit` took it. False when `emit` refused (nothing recorded).
  bool ApplyPut(std::string_view key, int64_t revision, SharedValue value, EmitFn emit);
  // The same, copying `value` only for what is recorded.
  bool ApplyPut(std::string_view key, int64_t revision, std::string_view value, EmitFn emit);
  // The same, moving `value` into the event when values are not kept (it is left as it was when
  // `emit` refused), which spares a copy of every value.
  bool ApplyPut(std::string_view key, int64_t revision, std::string&& value, EmitFn emit);
  // A live delete of `key` at `revision`: kDelete with the last value when the key is known, then
  // forgotten; nothing (true) when it is unknown, as the consumer never heard of it. False when
  // `emit` refused (the key stays known).
  bool ApplyDelete(std::string_view key, int64_t revision, EmitFn emit);

  // The state the consumer was told for `key`, null if it was not told the key exists.
  const Known* Find(std::string_view key) const;
  size_t size() const { return keys_.size(); }
  bool empty() const { return keys_.empty(); }
  void Clear() { keys_.clear(); }
  const std::string& prefix() const { return prefix_; }

 private:
  friend class RelistDiff;
  using Map = absl::btree_map<std::string, Known, std::less<>>;

  // `key` without the prefix.
  std::string_view Relative(std::string_view key) const { return key.substr(prefix_.size()); }
  std::string Absolute(std::string_view relative) const;
  template <typename Value>
  bool ApplyPutImpl(std::string_view key, int64_t revision, Value&& value, EmitFn emit);

  std::string prefix_;
  bool keep_values_;
  // A B-tree: every event looks its key up here, and with many watchers the nodes of a red-black
  // tree missed the cache on most of its levels.
  Map keys_;
};

// Compares a fresh listing of the watched keys, taken at one revision and fed in ascending key
// order (all at once or page by page), with `known`, emitting the events that make the consumer's
// view equal to the listing, in key order: for each key of either, kDelete (with the last value
// the consumer was told, at the listing's revision) when it vanished, kCreate when it is new,
// kModify when its mod revision differs, nothing when it is unchanged. The first listing of a
// watch is the comparison with an empty view: a kCreate per key. kListDone is the caller's.
class RelistDiff {
 public:
  // `known` must outlive this and change only through it until Finish returned true.
  RelistDiff(KnownKeys& known, int64_t list_revision);
  RelistDiff(const RelistDiff&) = delete;
  RelistDiff& operator=(const RelistDiff&) = delete;

  // The next listed key (after every key listed before). Emits the deletes of the known keys
  // between the previous listed key and `key`, then the event for `key` itself. True once all of
  // them were taken; false when `emit` refused one: the events before it were taken and recorded,
  // and calling again with the same arguments continues with the refused one.
  bool Listed(std::string_view key, int64_t mod_revision, SharedValue value, EmitFn emit);
  // The same, copying `value` only when it is recorded.
  bool Listed(std::string_view key, int64_t mod_revision, std::string_view value, EmitFn emit);
  // The same, moving `value` into the event when values are not kept (left as it was when `emit`
  // refused): a listed page's values then go to the consumer without a copy, and the page's
  // memory with them.
  bool Listed(std::string_view key, int64_t mod_revision, std::string&& value, EmitFn emit);
  // The listing ended: emits the deletes of every known key after the last listed one. Same
  // contract for refusals.
  bool Finish(EmitFn emit);

  int64_t list_revision() const { return list_revision_; }

 private:
  // Emits the deletes of the known keys from cursor_ up to (not including) `relative_end`, or to
  // the end when it is null.
  bool EmitVanishedBefore(const std::string_view* relative_end, EmitFn emit);
  template <typename Value>
  bool ListedImpl(std::string_view key, int64_t mod_revision, Value&& value, EmitFn emit);

  KnownKeys& known_;
  const int64_t list_revision_;
  // Known keys (relative) before this were compared with the listing already.
  std::string cursor_;
};

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_RELIST_DIFF_H_

// Key ranges and the one list pager that ListPrefix and the watchers share.
#ifndef KVSTORE_BACKEND_ETCD_KEY_RANGE_H_
#define KVSTORE_BACKEND_ETCD_KEY_RANGE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "rpc.pb.h"

namespace kvstore::etcd {

// List pages. etcd 3.4 walks the whole rest of the range for every page it answers, so a list
// costs about n^2 / page_size: pages must be large (see tests/integration/etcd_list_bench.cc;
// 100,000 keys of 256 B took 11.6 s with Cilium's 256 keys a page, 3.9 s with 1000, 0.8 s
// unpaginated). The default is large and bounded in bytes instead: the first page is small and
// tells the size of the keys; every later page holds as many keys of the size seen last as fit in
// kListPageTargetBytes (FittingPageLimit). Not growing in steps matters: each page costs etcd 3.4
// a walk of the rest of the range whatever its limit (with 100,000 keys, a page of 500 took as
// long as one of 10,000), and the count bound is high enough for the byte bound to decide.
inline constexpr int64_t kDefaultListPageSize = 100000;
inline constexpr int64_t kFirstListPageSize = 500;
inline constexpr size_t kListPageTargetBytes = 4 << 20;

// The [start, end) range etcd uses for "every key starting with `prefix`". The empty prefix is
// the whole key space ("\0", "\0").
struct KeyRange {
  std::string start;
  std::string end;
};

inline KeyRange PrefixRange(std::string_view prefix) {
  if (prefix.empty()) return {std::string(1, '\0'), std::string(1, '\0')};
  std::string end(prefix);
  while (!end.empty()) {
    auto last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return {std::string(prefix), end};
    }
    end.pop_back();
  }
  // Every byte is 0xff: no upper bound.
  return {std::string(prefix), std::string(1, '\0')};
}

// The key right after `key` in etcd's byte order: where the next page starts.
inline std::string KeyAfter(std::string_view key) {
  std::string next(key);
  next.push_back('\0');
  return next;
}

// The limit of the first page when pages of `configured` keys are wanted.
inline int64_t FirstPageLimit(int64_t configured) {
  return std::min(configured, kFirstListPageSize);
}

// The limit for the next page after one of `keys` keys and `bytes` bytes: as many keys of that
// size as fit in the byte target, at least 1 and at most `configured`.
inline int64_t FittingPageLimit(int64_t configured, size_t keys, size_t bytes) {
  if (keys == 0 || bytes == 0) return configured;
  auto fitting = static_cast<int64_t>(keys * kListPageTargetBytes / bytes);
  return std::min(configured, std::max<int64_t>(1, fitting));
}

// The pages of one list of a prefix, all at the revision of the first: which Range to send next
// and where the list stands after each answer. A page size of 0 lists in one unpaginated request;
// otherwise pages follow FirstPageLimit / FittingPageLimit. Thread-compatible.
class ListPager {
 public:
  ListPager(std::string_view prefix, int64_t page_size)
      : range_(PrefixRange(prefix)), page_size_(page_size) {
    Restart();
  }

  // The request for the next page.
  etcdserverpb::RangeRequest NextRequest() const {
    etcdserverpb::RangeRequest request;
    request.set_key(cursor_);
    request.set_range_end(range_.end);
    request.set_limit(limit_);
    request.set_revision(revision_);
    return request;
  }

  // Takes the answer to NextRequest(); true when another page follows. Call before moving the
  // response's keys away.
  bool Advance(const etcdserverpb::RangeResponse& response) {
    if (revision_ == 0) revision_ = response.header().revision();
    if (!response.more() || response.kvs_size() == 0 || limit_ == 0) return false;
    size_t bytes = 0;
    for (const mvccpb::KeyValue& kv : response.kvs()) bytes += kv.key().size() + kv.value().size();
    cursor_ = KeyAfter(response.kvs(response.kvs_size() - 1).key());
    limit_ = FittingPageLimit(page_size_, static_cast<size_t>(response.kvs_size()), bytes);
    return true;
  }

  // Starts over from the first key at a fresh revision (the pinned one was compacted).
  void Restart() {
    cursor_ = range_.start;
    revision_ = 0;
    limit_ = page_size_ == 0 ? 0 : FirstPageLimit(page_size_);
  }

  // The revision the list is pinned at: that of the first answer, 0 before it.
  int64_t revision() const { return revision_; }

 private:
  const KeyRange range_;
  const int64_t page_size_;
  std::string cursor_;
  int64_t revision_ = 0;
  int64_t limit_ = 0;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_KEY_RANGE_H_

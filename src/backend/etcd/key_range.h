// Key ranges and list pagination shared by ListPrefix and the watchers.
#ifndef KVSTORE_BACKEND_ETCD_KEY_RANGE_H_
#define KVSTORE_BACKEND_ETCD_KEY_RANGE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvstore::etcd {

// List pages. etcd 3.4 walks the whole rest of the range for every page it answers, so a list
// costs about n^2 / page_size: pages must be large (see tests/integration/etcd_list_bench.cc;
// 100,000 keys of 256 B took 11.6 s with Cilium's 256 keys a page, 3.9 s with 1000, 0.8 s
// unpaginated). The default is large and bounded in bytes instead: the first page is small, later
// pages grow while a page stays under kListPageTargetBytes and shrink when one goes over it.
inline constexpr int64_t kDefaultListPageSize = 10000;
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

// The limit for the next page after one of `keys` keys and `bytes` bytes was received with
// `limit`: shrunk when the page was over the byte target, grown (at most fourfold, at most to
// `configured`) while pages stay under it.
inline int64_t NextPageLimit(int64_t configured, int64_t limit, size_t keys, size_t bytes) {
  if (bytes > kListPageTargetBytes && keys > 0) {
    auto fitting = static_cast<int64_t>(keys * kListPageTargetBytes / bytes);
    return std::max<int64_t>(1, fitting);
  }
  int64_t grown = limit * 4;
  if (bytes > 0 && keys > 0) {
    // Keys of the size seen so far that fit in the target.
    auto fitting = static_cast<int64_t>(keys * kListPageTargetBytes / bytes);
    grown = std::min(grown, std::max(limit, fitting));
  }
  return std::min(configured, grown);
}

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_KEY_RANGE_H_

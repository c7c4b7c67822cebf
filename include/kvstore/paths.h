// Cilium's key layout. Stable API: a C++ collaborator and a Cilium agent share one etcd.
#ifndef KVSTORE_PATHS_H_
#define KVSTORE_PATHS_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "kvstore/export.h"

namespace kvstore {

inline constexpr std::string_view kBaseKeyPrefix = "cilium";
inline constexpr std::string_view kSyncedPrefix = "cilium/synced";
inline constexpr std::string_view kHeartbeatPath = "cilium/.heartbeat";
inline constexpr std::string_view kInitLockPath = "cilium/.initlock";
inline constexpr std::string_view kStatePrefix = "cilium/state";
inline constexpr std::string_view kCachePrefix = "cilium/cache";

// Parts 3 and 4 of the path ("cilium/state/nodes/v1/x" -> "nodes/v1"); for keys with fewer than
// four parts, the first 12 characters.
KVSTORE_EXPORT std::string GetScopeFromKey(std::string_view key);

// "cilium/state/..." -> "cilium/cache/..."; other keys unchanged.
KVSTORE_EXPORT std::string StateToCachePrefix(std::string_view prefix);

// Joins path parts with single slashes: no doubled separators at the joints, no trailing slash.
// JoinPath("a/", "/b") == "a/b"; empty parts are skipped.
KVSTORE_EXPORT std::string JoinPath(std::string_view a, std::string_view b);

// `prefix` with exactly one trailing slash ("a/b", "a/b//" -> "a/b/"): as a watched prefix it
// matches the keys below it, never those of a sibling such as "a/bc".
KVSTORE_EXPORT std::string DirectoryPrefix(std::string_view prefix);

// The name that JoinPath(prefix, name) turned into `path`, or nullopt when `path` is not below
// `prefix` (a sibling such as "a/bc" is not below "a/b"). Points into `path`.
KVSTORE_EXPORT std::optional<std::string_view> NameBelow(std::string_view prefix,
                                                         std::string_view path);

// OK when `name` can be joined below a prefix and read back unchanged: not empty, and neither
// starting nor ending with '/'. InvalidArgument otherwise.
KVSTORE_EXPORT absl::Status CheckKeyName(std::string_view name);

// cilium/synced/<cluster>/<key>
KVSTORE_EXPORT std::string SyncedKeyPath(std::string_view cluster_name, std::string_view key);

}  // namespace kvstore

#endif  // KVSTORE_PATHS_H_

#include "kvstore/paths.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace kvstore {

std::string GetScopeFromKey(std::string_view key) {
  // Only the first four parts matter; Cilium splits into at most five.
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (parts.size() < 4) {
    size_t slash = key.find('/', start);
    if (slash == std::string_view::npos) {
      parts.push_back(key.substr(start));
      break;
    }
    parts.push_back(key.substr(start, slash - start));
    start = slash + 1;
  }
  if (parts.size() < 4) return std::string(key.substr(0, 12));
  std::string scope(parts[2]);
  scope += '/';
  scope += parts[3];
  return scope;
}

std::string StateToCachePrefix(std::string_view prefix) {
  if (prefix.substr(0, kStatePrefix.size()) != kStatePrefix) return std::string(prefix);
  std::string out(kCachePrefix);
  out += prefix.substr(kStatePrefix.size());
  return out;
}

std::string JoinPath(std::string_view a, std::string_view b) {
  while (!a.empty() && a.back() == '/') a.remove_suffix(1);
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  while (!b.empty() && b.back() == '/') b.remove_suffix(1);
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  std::string out;
  out.reserve(a.size() + 1 + b.size());
  out.append(a);
  out += '/';
  out.append(b);
  return out;
}

absl::Status CheckKeyName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("key name must not be empty");
  if (name.front() == '/' || name.back() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("key name \"",
                                                   absl::string_view(name.data(), name.size()),
                                                   "\" must not start or end with '/'"));
  }
  return absl::OkStatus();
}

std::string DirectoryPrefix(std::string_view prefix) {
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  std::string directory(prefix);
  directory += '/';
  return directory;
}

std::optional<std::string_view> NameBelow(std::string_view prefix, std::string_view path) {
  if (!path.starts_with(prefix)) return std::nullopt;
  std::string_view name = path.substr(prefix.size());
  if (!prefix.empty() && !prefix.ends_with('/') && !name.starts_with('/')) return std::nullopt;
  while (name.starts_with('/')) name.remove_prefix(1);
  return name;
}

std::string SyncedKeyPath(std::string_view cluster_name, std::string_view key) {
  return JoinPath(JoinPath(kSyncedPrefix, cluster_name), key);
}

}  // namespace kvstore

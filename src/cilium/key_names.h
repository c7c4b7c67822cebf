// How a typed key's name relates to the key a store hands to Unmarshal.
#ifndef KVSTORE_SRC_CILIUM_KEY_NAMES_H_
#define KVSTORE_SRC_CILIUM_KEY_NAMES_H_

#include <string_view>

namespace kvstore::cilium::internal {

// Whether `path` ends with `suffix` as whole path elements: "a/b/c" ends with "b/c" and with
// "a/b/c"; "ab/c" does not end with "b/c".
inline bool EndsWithPath(std::string_view path, std::string_view suffix) {
  if (suffix.empty() || path.size() < suffix.size()) return false;
  if (path.substr(path.size() - suffix.size()) != suffix) return false;
  return path.size() == suffix.size() || path[path.size() - suffix.size() - 1] == '/';
}

// A store hands its key relative to its prefix: the object's full name ("<cluster>/<name>")
// under the kind's prefix, or just `short_name` under a cluster's directory. Either may have
// more elements in front (a wider prefix).
inline bool KeyMatches(std::string_view key, std::string_view full_name,
                       std::string_view short_name) {
  return key.empty() || EndsWithPath(key, full_name) || key == short_name;
}

}  // namespace kvstore::cilium::internal

#endif  // KVSTORE_SRC_CILIUM_KEY_NAMES_H_

// Keys as the stores see them: named, (un)marshalled by the user, observed.
#ifndef KVSTORE_STORE_KEY_H_
#define KVSTORE_STORE_KEY_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/export.h"

namespace kvstore::store {

class KVSTORE_EXPORT NamedKey {
 public:
  virtual ~NamedKey() = default;
  // The key's name relative to the store's prefix.
  virtual std::string GetKeyName() const = 0;
};

class KVSTORE_EXPORT Key : public NamedKey {
 public:
  virtual absl::StatusOr<std::string> Marshal() const = 0;
  // `key` is relative to the store's prefix; `data` is the stored value.
  virtual absl::Status Unmarshal(std::string_view key, std::string_view data) = 0;
  // Unmarshal of a value the caller gives away, which the stores use for the values they
  // receive: a key that keeps the bytes may take them instead of copying (KVPair does). By
  // default, Unmarshal. Not an overload of it: a string literal would fit both equally.
  virtual absl::Status UnmarshalOwned(std::string_view key, std::string&& data) {
    return Unmarshal(key, std::string_view(data));
  }
};

// A key owned by this process.
class KVSTORE_EXPORT LocalKey : public Key {
 public:
  virtual std::unique_ptr<LocalKey> DeepKeyCopy() const = 0;
};

using KeyCreator = std::function<std::unique_ptr<Key>()>;

// Observers are called from the store's own thread, one event at a time, in stream order.
class KVSTORE_EXPORT Observer {
 public:
  virtual ~Observer() = default;
  virtual void OnUpdate(const Key& key) = 0;
  virtual void OnDelete(const NamedKey& key) = 0;
};

// A raw key/value pair: name = key, value = the bytes.
struct KVSTORE_EXPORT KVPair final : LocalKey {
  std::string key, value;

  KVPair() = default;
  KVPair(std::string k, std::string v);
  // Compares key and value (a defaulted == would need == on the abstract bases).
  bool operator==(const KVPair& other) const { return key == other.key && value == other.value; }

  std::string GetKeyName() const override;
  absl::StatusOr<std::string> Marshal() const override;
  absl::Status Unmarshal(std::string_view key, std::string_view data) override;
  // Takes `data` as its value.
  absl::Status UnmarshalOwned(std::string_view key, std::string&& data) override;
  std::unique_ptr<LocalKey> DeepKeyCopy() const override;
};

KVSTORE_EXPORT std::unique_ptr<Key> KVPairCreator();

}  // namespace kvstore::store

#endif  // KVSTORE_STORE_KEY_H_

#include "kvstore/store/key.h"

#include <utility>

namespace kvstore::store {

KVPair::KVPair(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}

std::string KVPair::GetKeyName() const { return key; }

absl::StatusOr<std::string> KVPair::Marshal() const { return value; }

absl::Status KVPair::Unmarshal(std::string_view k, std::string_view data) {
  key.assign(k);
  value.assign(data);
  return absl::OkStatus();
}

absl::Status KVPair::UnmarshalOwned(std::string_view k, std::string&& data) {
  key.assign(k);
  value = std::move(data);
  return absl::OkStatus();
}

std::unique_ptr<LocalKey> KVPair::DeepKeyCopy() const { return std::make_unique<KVPair>(*this); }

std::unique_ptr<Key> KVPairCreator() { return std::make_unique<KVPair>(); }

}  // namespace kvstore::store

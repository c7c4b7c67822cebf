// What the two store fuzzers (watch_store_fuzzer, shared_store_fuzzer) decode keys with: the
// prefix variants, a few fixed names that make keys collide, and a key type that refuses some
// values, as a user type that cannot parse what another writer stored.
#ifndef KVSTORE_FUZZ_STORE_FUZZ_KEYS_H_
#define KVSTORE_FUZZ_STORE_FUZZ_KEYS_H_

#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fuzz/fuzz_input.h"
#include "kvstore/store/key.h"

namespace kvstore::fuzz {

// With and without trailing slashes, and one too short to have a scope.
inline constexpr std::string_view kPrefixes[] = {"cilium/state/fuzz/v1", "cilium/state/fuzz/v1/",
                                                 "cilium/state/fuzz/v1//", "x"};
inline constexpr std::string_view kNames[] = {"a",        "b", "a/b", "node/1",
                                              "\xff\xfe", "",  "c d", "b/"};
// PickyKey refuses values starting with this.
inline constexpr char kRejectedMarker = '!';

// A raw key whose Unmarshal fails for values starting with kRejectedMarker.
class PickyKey final : public store::Key {
 public:
  std::string GetKeyName() const override { return name_; }
  absl::StatusOr<std::string> Marshal() const override { return value_; }
  absl::Status Unmarshal(std::string_view key, std::string_view data) override {
    if (data.starts_with(kRejectedMarker)) return absl::InvalidArgumentError("rejected value");
    name_ = std::string(key);
    value_ = std::string(data);
    return absl::OkStatus();
  }

 private:
  std::string name_, value_;
};

// <name>: one byte b; b < 0xc0 picks one of kNames (so that keys collide), else (b & 0x3f) raw
// bytes follow.
inline std::string DecodeName(FuzzInput& in) {
  uint8_t b = in.Byte();
  if (b < 0xc0) return std::string(kNames[b % std::size(kNames)]);
  return in.Raw(b & 0x3f);
}

}  // namespace kvstore::fuzz

#endif  // KVSTORE_FUZZ_STORE_FUZZ_KEYS_H_

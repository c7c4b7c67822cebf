// Cilium's typed keys (include/kvstore/cilium/) on arbitrary keys and values. The first byte
// picks the parser, then a key (one length byte) and the rest is the value. Whatever the bytes:
// Unmarshal returns a status, never crashes or throws; a value it takes marshals, and what it
// marshals parses back to the very same bytes (Marshal's output is a fixed point), so that a
// writer never rewrites an unchanged object. Labels are the exception Cilium has too: a label
// read from "reserved:=k=v" has the key "k=v", written "reserved:k=v=;" and read back as key "k"
// with value "v=", so labels strings (and the identities keyed by them) settle after one more
// round.
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "fuzz/fuzz_input.h"
#include "kvstore/cilium/cilium.h"

namespace kvstore::fuzz {
namespace {

// An object as a writer stores it: its key name and its value.
struct Stored {
  std::string name, value;
  bool operator==(const Stored&) const = default;
};

template <typename T>
Stored Store(const T& object) {
  absl::StatusOr<std::string> value = object.Marshal();
  FUZZ_CHECK(value.ok(), "a value taken does not marshal: " + value.status().ToString());
  return Stored{object.GetKeyName(), *value};
}

// What a reader makes of `stored`, stored again.
template <typename T>
Stored Reread(const Stored& stored) {
  T reparsed;
  absl::Status status = reparsed.Unmarshal(stored.name, stored.value);
  FUZZ_CHECK(status.ok(), "a stored object is rejected: " + status.ToString() + "\n  " +
                              Printable(stored.name) + "\n  " + Printable(stored.value));
  return Store(reparsed);
}

template <typename T>
void CheckType(const std::string& key, const std::string& value) {
  T parsed;
  absl::Status status;
  try {
    status = parsed.Unmarshal(key, value);
  } catch (...) {
    FUZZ_CHECK(false, "Unmarshal threw on " + Printable(value));
  }
  if (!status.ok()) {
    FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument && !status.message().empty(),
               status.ToString());
    return;
  }
  Stored first = Store(parsed);
  constexpr bool kHasLabels =
      std::is_same_v<T, cilium::Identity> || std::is_same_v<T, cilium::IdentityValueKey>;
  if (kHasLabels) first = Reread<T>(first);
  const Stored again = Reread<T>(first);
  FUZZ_CHECK(again == first, "not a fixed point:\n  " + Printable(first.name) + " " +
                                 Printable(first.value) + "\n  " + Printable(again.name) + " " +
                                 Printable(again.value));
}

void CheckIP(const std::string& text) {
  absl::StatusOr<std::string> ip = cilium::CanonicalIP(text);
  if (ip.ok()) FUZZ_CHECK(*cilium::CanonicalIP(*ip) == *ip, "IP not canonical: " + *ip);
  absl::StatusOr<cilium::IPNet> net = cilium::IPNet::Parse(text);
  if (net.ok()) {
    absl::StatusOr<cilium::IPNet> again = cilium::IPNet::Parse(net->ToString());
    FUZZ_CHECK(again.ok() && *again == *net, "CIDR does not round trip: " + net->ToString());
  }
}

void CheckLabels(const std::string& text) {
  const std::string formatted =
      cilium::FormatLabels(cilium::ParseLabels(cilium::FormatLabels(cilium::ParseLabels(text))));
  FUZZ_CHECK(cilium::FormatLabels(cilium::ParseLabels(formatted)) == formatted,
             "labels string not a fixed point: " + Printable(formatted));
}

void RunOne(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const uint8_t kind = in.Byte();
  const std::string key = in.Bytes(64);
  const std::string value = in.Raw(size);
  switch (kind % 8) {
    case 0:
      return CheckType<cilium::Node>(key, value);
    case 1:
      return CheckType<cilium::Identity>(key, value);
    case 2:
      return CheckType<cilium::IdentityValueKey>(key, value);
    case 3:
      return CheckType<cilium::IPCacheEntry>(key, value);
    case 4:
      return CheckType<cilium::ClusterService>(key, value);
    case 5:
      return CheckType<cilium::ServiceExport>(key, value);
    case 6:
      return CheckIP(value);
    default:
      return CheckLabels(value);
  }
}

}  // namespace
}  // namespace kvstore::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvstore::fuzz::RunOne(data, size);
  return 0;
}

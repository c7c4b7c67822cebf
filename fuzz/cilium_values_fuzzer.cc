// Cilium's typed keys (include/kvstore/cilium/) on arbitrary keys and values. The first byte
// picks the parser, then a key (one length byte) and the rest is the value. Whatever the bytes:
// Unmarshal returns a status, never crashes or throws; a value it takes marshals, and what it
// marshals parses back to the very same bytes (Marshal's output is a fixed point), so that a
// writer never rewrites an unchanged object.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_input.h"
#include "kvstore/cilium/cilium.h"

namespace kvstore::fuzz {
namespace {

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
  absl::StatusOr<std::string> written = parsed.Marshal();
  FUZZ_CHECK(written.ok(), "a value taken does not marshal: " + written.status().ToString());
  // Keys of the id/ and value/ kinds are their names; the others' names must match `key`.
  const std::string again_key = parsed.GetKeyName();
  T reparsed;
  absl::Status again = reparsed.Unmarshal(key.empty() ? key : again_key, *written);
  FUZZ_CHECK(again.ok(),
             "marshalled value rejected: " + again.ToString() + "\n  " + Printable(*written));
  absl::StatusOr<std::string> twice = reparsed.Marshal();
  FUZZ_CHECK(twice.ok() && *twice == *written,
             "not a fixed point:\n  " + Printable(*written) + "\n  " + Printable(*twice));
  FUZZ_CHECK(reparsed.GetKeyName() == again_key, "the key name changed: " + again_key);
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
  const std::string formatted = cilium::FormatLabels(cilium::ParseLabels(text));
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

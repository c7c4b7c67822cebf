// Go's encoding/json, the parts Cilium's values use: a writer that produces exactly the bytes
// json.Marshal does, and readers that decode as json.Unmarshal does into a struct.
#ifndef KVSTORE_SRC_CILIUM_GO_JSON_H_
#define KVSTORE_SRC_CILIUM_GO_JSON_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "kvstore/cilium/net.h"
#include "nlohmann/json.hpp"

// Returns the status of `expr` when it is not OK.
#define KVSTORE_RETURN_IF_ERROR(expr)                                 \
  do {                                                                \
    if (absl::Status status_ = (expr); !status_.ok()) return status_; \
  } while (0)

namespace kvstore::cilium::internal {

// Debian's abseil has its own string_view: the two convert only through these.
inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view Sv(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// Compact JSON as json.Marshal writes it: no spaces; strings escaped as Go does (`<` `>` `&`
// U+2028 U+2029 as \u003c \u003e \u0026 \u2028 \u2029, \b \f \n \r \t, other control
// characters as \u00XX, invalid UTF-8 as \ufffd). The caller writes fields in struct order and
// map keys sorted (std::map's byte order is Go's).
class GoJsonWriter {
 public:
  void BeginObject();
  void EndObject();
  void BeginArray();
  void EndArray();
  // An object member's name; the next call writes its value.
  void Key(std::string_view name);
  void String(std::string_view value);
  void Bool(bool value);
  void Uint(uint64_t value);
  void Int(int64_t value);
  void Null();
  // A []byte: padded standard base64 in a string.
  void Bytes(std::string_view raw);
  // A map[string]string; nullopt is a nil map (null).
  void StringMap(const std::optional<std::map<std::string, std::string>>& map);

  const std::string& out() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void BeforeValue();

  std::string out_;
  // Per open object or array: whether it already has a member.
  std::vector<bool> has_member_;
  bool after_key_ = false;
};

// Appends `value` as a Go JSON string literal, quotes included.
void AppendGoString(std::string& out, std::string_view value);

using Json = nlohmann::ordered_json;

// Where a decode error is: the key and the path of the field ("IPAddresses[1].IP").
struct Where {
  std::string_view key;
  std::string field;
  Where Member(std::string_view name) const;
  Where Index(size_t i) const;
  absl::Status Error(absl::string_view what) const;
};

// Parses `data` as one JSON value; InvalidArgument naming `key` when it is not JSON (Go's
// json.Unmarshal also rejects invalid UTF-8 only where we do: we reject it everywhere).
absl::Status ParseJson(std::string_view key, std::string_view data, Json& out);

// Decodes the members of a JSON object into a struct whose JSON field names are `names`, as Go
// matches them: the member's exact name, else an ASCII case-insensitive match (the first field
// in `names` that matches). Members that match no field are ignored, as Go does. `on_field` is
// called with the field's index in `names`, in document order (a repeated member: the last
// wins). null is no object at all (nothing decoded); another type is an error.
absl::Status DecodeObject(
    const Json& value, const Where& where, std::span<const std::string_view> names,
    const std::function<absl::Status(size_t, const Json&, const Where&)>& on_field);

// Go's rules for each kind: null leaves a string, bool or number as it was, and sets a slice,
// map or pointer to nil (nullopt, or an empty string for net.IP).
absl::Status ReadString(const Json& value, const Where& where, std::string& out);
absl::Status ReadBool(const Json& value, const Where& where, bool& out);
// An integer within [0, max] (Go rejects fractions, exponents and out-of-range numbers).
absl::Status ReadUint(const Json& value, const Where& where, uint64_t max, uint64_t& out);
absl::Status ReadInt(const Json& value, const Where& where, int64_t min, int64_t max, int64_t& out);
template <typename T>
absl::Status ReadUintAs(const Json& value, const Where& where, T& out) {
  uint64_t wide = out;
  absl::Status status = ReadUint(value, where, static_cast<uint64_t>(T(~T(0))), wide);
  if (status.ok()) out = static_cast<T>(wide);
  return status;
}
// A net.IP: "" or null is no address (stored ""); otherwise the address in Go's canonical form.
absl::Status ReadIP(const Json& value, const Where& where, std::string& out);
// A []byte / net.IPMask: base64; null is nil (nullopt).
absl::Status ReadBytes(const Json& value, const Where& where, std::optional<std::string>& out);
// A map[string]string: decoded into the map (created when nil), as Go merges into a map.
absl::Status ReadStringMap(const Json& value, const Where& where,
                           std::optional<std::map<std::string, std::string>>& out);

// A *cidr.CIDR / *net.IPNet: {"IP":..,"Mask":..} or null (nullopt).
absl::Status ReadIPNet(const Json& value, const Where& where, std::optional<IPNet>& out);
// An IP as Go writes a net.IP: "" when empty, else the canonical form; InvalidArgument naming
// `field` when `ip` is not an address.
absl::Status WriteIP(GoJsonWriter& writer, std::string_view field, std::string_view ip);
absl::Status WriteIPNet(GoJsonWriter& writer, std::string_view field,
                        const std::optional<IPNet>& net);
// The array form of a slice: null when nullopt, else each element by `read`.
template <typename T, typename Read>
absl::Status ReadSlice(const Json& value, const Where& where, std::optional<std::vector<T>>& out,
                       Read read) {
  if (value.is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  if (!value.is_array()) return where.Error("want an array");
  std::vector<T> items(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (absl::Status status = read(value[i], where.Index(i), items[i]); !status.ok()) {
      return status;
    }
  }
  out = std::move(items);
  return absl::OkStatus();
}

}  // namespace kvstore::cilium::internal

#endif  // KVSTORE_SRC_CILIUM_GO_JSON_H_

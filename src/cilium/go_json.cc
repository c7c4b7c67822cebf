#include "cilium/go_json.h"

#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kvstore/cilium/net.h"

namespace kvstore::cilium::internal {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// The length of the valid UTF-8 sequence at the start of `s` (Go's utf8.DecodeRune rules: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0 when it is not one.
size_t Utf8Length(std::string_view s, uint32_t* rune) {
  const auto b0 = static_cast<uint8_t>(s[0]);
  size_t n;
  uint8_t lo = 0x80, hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 == 0xe0) lo = 0xa0;
    if (b0 == 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 == 0xf0) lo = 0x90;
    if (b0 == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  uint32_t r = b0 & (0xff >> (n + 1));
  for (size_t i = 1; i < n; ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return 0;
    r = (r << 6) | (b & 0x3f);
  }
  *rune = r;
  return n;
}

void AppendUnicodeEscape(std::string& out, uint32_t code) {
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(code >> shift) & 0xf];
}

}  // namespace

void AppendGoString(std::string& out, std::string_view value) {
  out += '"';
  size_t i = 0;
  while (i < value.size()) {
    const auto c = static_cast<uint8_t>(value[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '<':
        case '>':
        case '&':
          AppendUnicodeEscape(out, c);
          break;
        default:
          if (c < 0x20) {
            AppendUnicodeEscape(out, c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    uint32_t rune = 0;
    const size_t n = Utf8Length(value.substr(i), &rune);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (rune == 0x2028 || rune == 0x2029) {
      AppendUnicodeEscape(out, rune);
    } else {
      out.append(value.substr(i, n));
    }
    i += n;
  }
  out += '"';
}

void GoJsonWriter::BeforeValue() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!has_member_.empty()) {
    if (has_member_.back()) out_ += ',';
    has_member_.back() = true;
  }
}

void GoJsonWriter::BeginObject() {
  BeforeValue();
  out_ += '{';
  has_member_.push_back(false);
}

void GoJsonWriter::EndObject() {
  out_ += '}';
  has_member_.pop_back();
}

void GoJsonWriter::BeginArray() {
  BeforeValue();
  out_ += '[';
  has_member_.push_back(false);
}

void GoJsonWriter::EndArray() {
  out_ += ']';
  has_member_.pop_back();
}

void GoJsonWriter::Key(std::string_view name) {
  if (has_member_.back()) out_ += ',';
  has_member_.back() = true;
  AppendGoString(out_, name);
  out_ += ':';
  after_key_ = true;
}

void GoJsonWriter::String(std::string_view value) {
  BeforeValue();
  AppendGoString(out_, value);
}

void GoJsonWriter::Bool(bool value) {
  BeforeValue();
  out_ += value ? "true" : "false";
}

void GoJsonWriter::Uint(uint64_t value) {
  BeforeValue();
  absl::StrAppend(&out_, value);
}

void GoJsonWriter::Int(int64_t value) {
  BeforeValue();
  absl::StrAppend(&out_, value);
}

void GoJsonWriter::Null() {
  BeforeValue();
  out_ += "null";
}

void GoJsonWriter::Bytes(std::string_view raw) {
  BeforeValue();
  out_ += '"';
  out_ += absl::Base64Escape(Av(raw));
  out_ += '"';
}

void GoJsonWriter::StringMap(const std::optional<std::map<std::string, std::string>>& map) {
  if (!map) return Null();
  BeginObject();
  for (const auto& [k, v] : *map) {
    Key(k);
    String(v);
  }
  EndObject();
}

Where Where::Member(std::string_view name) const {
  return Where{key, field.empty() ? std::string(name) : absl::StrCat(field, ".", Av(name))};
}

Where Where::Index(size_t i) const { return Where{key, absl::StrCat(field, "[", i, "]")}; }

absl::Status Where::Error(absl::string_view what) const {
  return absl::InvalidArgumentError(
      absl::StrCat("key \"", Av(key), "\": field ", field.empty() ? "(value)" : field, ": ", what));
}

absl::Status ParseJson(std::string_view key, std::string_view data, Json& out) {
  out = Json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("key \"", Av(key), "\": value is not JSON (", data.size(), " bytes)"));
  }
  return absl::OkStatus();
}

namespace {

const char* TypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::null:
      return "null";
    default:
      return "a number";
  }
}

absl::Status WrongType(const Json& value, const Where& where, std::string_view want) {
  return where.Error(absl::StrCat("want ", Av(want), ", got ", TypeName(value)));
}

}  // namespace

absl::Status DecodeObject(
    const Json& value, const Where& where, std::span<const std::string_view> names,
    const std::function<absl::Status(size_t, const Json&, const Where&)>& on_field) {
  if (value.is_null()) return absl::OkStatus();
  if (!value.is_object()) return WrongType(value, where, "an object");
  for (const auto& [member, member_value] : value.items()) {
    size_t index = names.size();
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == member) {
        index = i;
        break;
      }
    }
    if (index == names.size()) {
      for (size_t i = 0; i < names.size(); ++i) {
        if (absl::EqualsIgnoreCase(Av(names[i]), member)) {
          index = i;
          break;
        }
      }
    }
    if (index == names.size()) continue;
    if (absl::Status status = on_field(index, member_value, where.Member(names[index]));
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status ReadString(const Json& value, const Where& where, std::string& out) {
  if (value.is_null()) return absl::OkStatus();
  if (!value.is_string()) return WrongType(value, where, "a string");
  out = value.get_ref<const std::string&>();
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& value, const Where& where, bool& out) {
  if (value.is_null()) return absl::OkStatus();
  if (!value.is_boolean()) return WrongType(value, where, "a boolean");
  out = value.get<bool>();
  return absl::OkStatus();
}

absl::Status ReadUint(const Json& value, const Where& where, uint64_t max, uint64_t& out) {
  if (value.is_null()) return absl::OkStatus();
  if (value.is_number_unsigned()) {
    const auto n = value.get<uint64_t>();
    if (n > max) return where.Error(absl::StrCat("number ", n, " is out of range"));
    out = n;
    return absl::OkStatus();
  }
  if (value.is_number_integer()) {
    return where.Error(absl::StrCat("number ", value.get<int64_t>(), " is out of range"));
  }
  if (value.is_number_float()) return where.Error("want an integer, got a fraction or exponent");
  return WrongType(value, where, "a number");
}

absl::Status ReadInt(const Json& value, const Where& where, int64_t min, int64_t max,
                     int64_t& out) {
  if (value.is_null()) return absl::OkStatus();
  if (value.is_number_unsigned()) {
    const auto n = value.get<uint64_t>();
    if (n > static_cast<uint64_t>(max)) {
      return where.Error(absl::StrCat("number ", n, " is out of range"));
    }
    out = static_cast<int64_t>(n);
    return absl::OkStatus();
  }
  if (value.is_number_integer()) {
    const auto n = value.get<int64_t>();
    if (n < min || n > max) return where.Error(absl::StrCat("number ", n, " is out of range"));
    out = n;
    return absl::OkStatus();
  }
  if (value.is_number_float()) return where.Error("want an integer, got a fraction or exponent");
  return WrongType(value, where, "a number");
}

absl::Status ReadIP(const Json& value, const Where& where, std::string& out) {
  if (value.is_null()) {
    out.clear();
    return absl::OkStatus();
  }
  if (!value.is_string()) return WrongType(value, where, "an IP address string");
  const auto& text = value.get_ref<const std::string&>();
  if (text.empty()) {
    out.clear();
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ip = CanonicalIP(text);
  if (!ip.ok()) return where.Error(ip.status().message());
  out = *std::move(ip);
  return absl::OkStatus();
}

absl::Status ReadBytes(const Json& value, const Where& where, std::optional<std::string>& out) {
  if (value.is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  if (!value.is_string()) return WrongType(value, where, "a base64 string");
  std::string raw;
  const auto& text = value.get_ref<const std::string&>();
  // Go's StdEncoding wants the padding; absl takes it or leaves it, so check it here.
  if (text.size() % 4 != 0 || !absl::Base64Unescape(text, &raw)) {
    return where.Error("illegal base64 data");
  }
  out = std::move(raw);
  return absl::OkStatus();
}

absl::Status ReadStringMap(const Json& value, const Where& where,
                           std::optional<std::map<std::string, std::string>>& out) {
  if (value.is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  if (!value.is_object()) return WrongType(value, where, "an object");
  if (!out) out.emplace();
  for (const auto& [k, v] : value.items()) {
    std::string& slot = (*out)[k];
    if (absl::Status status = ReadString(v, where.Member(k), slot); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ReadIPNet(const Json& value, const Where& where, std::optional<IPNet>& out) {
  if (value.is_null()) {
    out.reset();
    return absl::OkStatus();
  }
  IPNet net;
  static constexpr std::string_view kNames[] = {"IP", "Mask"};
  absl::Status status =
      DecodeObject(value, where, kNames, [&](size_t field, const Json& v, const Where& at) {
        return field == 0 ? ReadIP(v, at, net.ip) : ReadBytes(v, at, net.mask);
      });
  if (!status.ok()) return status;
  out = std::move(net);
  return absl::OkStatus();
}

absl::Status WriteIP(GoJsonWriter& writer, std::string_view field, std::string_view ip) {
  if (ip.empty()) {
    writer.String("");
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> canonical = CanonicalIP(ip);
  if (!canonical.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(Av(field), ": ", canonical.status().message()));
  }
  writer.String(*canonical);
  return absl::OkStatus();
}

absl::Status WriteIPNet(GoJsonWriter& writer, std::string_view field,
                        const std::optional<IPNet>& net) {
  if (!net) {
    writer.Null();
    return absl::OkStatus();
  }
  writer.BeginObject();
  writer.Key("IP");
  if (absl::Status status = WriteIP(writer, field, net->ip); !status.ok()) return status;
  writer.Key("Mask");
  if (net->mask) {
    writer.Bytes(*net->mask);
  } else {
    writer.Null();
  }
  writer.EndObject();
  return absl::OkStatus();
}

}  // namespace kvstore::cilium::internal

#include "kvstore/cilium/net.h"

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cilium/go_json.h"

namespace kvstore::cilium {
namespace {

using internal::Av;

// The 16-byte form of `text` (IPv4 as IPv4-mapped), or false. inet_pton reads exactly what Go's
// net.ParseIP reads: no zones, no leading zeros in IPv4 parts, an IPv4 tail in IPv6.
bool ParseIP16(std::string_view text, std::array<uint8_t, 16>& out, bool* is_v4) {
  if (text.empty() || text.size() > 64) return false;
  const std::string z(text);
  std::array<uint8_t, 4> v4;
  if (inet_pton(AF_INET, z.c_str(), v4.data()) == 1) {
    out = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3]};
    if (is_v4) *is_v4 = true;
    return true;
  }
  if (inet_pton(AF_INET6, z.c_str(), out.data()) == 1) {
    if (is_v4) *is_v4 = false;
    return true;
  }
  return false;
}

bool IsV4Mapped(const std::array<uint8_t, 16>& ip) {
  for (int i = 0; i < 10; ++i) {
    if (ip[i] != 0) return false;
  }
  return ip[10] == 0xff && ip[11] == 0xff;
}

// Go's netip string forms: dotted IPv4; IPv6 with the first longest run of two or more zero
// groups as "::", groups in lower-case hex without leading zeros.
std::string FormatIP16(const std::array<uint8_t, 16>& ip) {
  std::string out;
  if (IsV4Mapped(ip)) {
    for (int i = 12; i < 16; ++i) {
      if (i > 12) out += '.';
      absl::StrAppend(&out, ip[i]);
    }
    return out;
  }
  int best_start = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (ip[2 * i] == 0 && ip[2 * i + 1] == 0) {
      int j = i;
      while (j < 8 && ip[2 * j] == 0 && ip[2 * j + 1] == 0) ++j;
      if (j - i >= 2 && j - i > best_len) {
        best_start = i;
        best_len = j - i;
      }
      i = j;
    } else {
      ++i;
    }
  }
  for (int i = 0; i < 8; ++i) {
    if (i == best_start) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    const unsigned group = (ip[2 * i] << 8) | ip[2 * i + 1];
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      const unsigned digit = (group >> shift) & 0xf;
      if (digit == 0 && !started && shift > 0) continue;
      started = true;
      out += "0123456789abcdef"[digit];
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> CanonicalIP(std::string_view text) {
  std::array<uint8_t, 16> ip;
  if (!ParseIP16(text, ip, nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid IP address \"", Av(text), "\""));
  }
  return FormatIP16(ip);
}

std::optional<int> MaskOnes(std::string_view mask) {
  if (mask.size() != 4 && mask.size() != 16) return std::nullopt;
  int ones = 0;
  size_t i = 0;
  for (; i < mask.size() && static_cast<uint8_t>(mask[i]) == 0xff; ++i) ones += 8;
  if (i < mask.size()) {
    uint8_t byte = static_cast<uint8_t>(mask[i]);
    while (byte & 0x80) {
      ++ones;
      byte = static_cast<uint8_t>(byte << 1);
    }
    if (byte != 0) return std::nullopt;
    for (++i; i < mask.size(); ++i) {
      if (mask[i] != 0) return std::nullopt;
    }
  }
  return ones;
}

std::string CIDRMask(int ones, int bits) {
  std::string mask(static_cast<size_t>(bits / 8), '\0');
  for (int i = 0; i < ones && i < bits; ++i) {
    mask[static_cast<size_t>(i / 8)] = static_cast<char>(
        static_cast<uint8_t>(mask[static_cast<size_t>(i / 8)]) | (0x80 >> (i % 8)));
  }
  return mask;
}

absl::StatusOr<IPNet> IPNet::Parse(std::string_view cidr) {
  const size_t slash = cidr.find('/');
  auto invalid = [&] {
    return absl::InvalidArgumentError(absl::StrCat("invalid CIDR address \"", Av(cidr), "\""));
  };
  if (slash == std::string_view::npos) return invalid();
  std::array<uint8_t, 16> ip;
  bool is_v4 = false;
  if (!ParseIP16(cidr.substr(0, slash), ip, &is_v4)) return invalid();
  const std::string_view length = cidr.substr(slash + 1);
  int ones = 0;
  // Go takes decimal digits only: no sign, no leading zeros beyond "0".
  if (length.empty() || length.size() > 3 || (length.size() > 1 && length[0] == '0') ||
      length.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(Av(length), &ones)) {
    return invalid();
  }
  const int bits = is_v4 ? 32 : 128;
  if (ones > bits) return invalid();
  IPNet net;
  net.mask = CIDRMask(ones, bits);
  const size_t offset = is_v4 ? 12 : 0;
  for (size_t i = 0; i < net.mask->size(); ++i) {
    ip[offset + i] &= static_cast<uint8_t>((*net.mask)[i]);
  }
  net.ip = FormatIP16(ip);
  return net;
}

std::string IPNet::ToString() const {
  std::string out = ip.empty() ? "<nil>" : ip;
  if (!mask) return out;
  if (auto ones = MaskOnes(*mask)) return absl::StrCat(out, "/", *ones);
  out += '/';
  for (char c : *mask) absl::StrAppendFormat(&out, "%02x", static_cast<uint8_t>(c));
  return out;
}

}  // namespace kvstore::cilium

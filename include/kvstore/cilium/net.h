// IP addresses and networks as Cilium's Go values hold them (net.IP, net.IPMask, net.IPNet), in
// the text Go writes for them.
#ifndef KVSTORE_CILIUM_NET_H_
#define KVSTORE_CILIUM_NET_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kvstore/export.h"

namespace kvstore::cilium {

// `text` as Go's net.IP String() writes the address net.ParseIP reads from it: IPv4 (and
// IPv4-mapped IPv6) dotted, IPv6 in RFC 5952 form ("2001:db8::1"). InvalidArgument when `text`
// is not an IP address (zones, prefixes and leading zeros included, as Go rejects them).
KVSTORE_EXPORT absl::StatusOr<std::string> CanonicalIP(std::string_view text);

// The prefix length of a mask of the form 1...10...0 (4 or 16 bytes), or nullopt for any other
// mask (Go's IPMask.Size() returns 0, 0 for those).
KVSTORE_EXPORT std::optional<int> MaskOnes(std::string_view mask);

// A mask of `ones` leading one bits out of `bits` (32 or 128), as raw bytes.
KVSTORE_EXPORT std::string CIDRMask(int ones, int bits);

// Go's net.IPNet (and Cilium's cidr.CIDR around it): {"IP":"10.0.0.0","Mask":"////AA=="}.
struct KVSTORE_EXPORT IPNet {
  std::string ip;                   // canonical text (CanonicalIP); "" for no address
  std::optional<std::string> mask;  // raw bytes; nullopt is a nil mask (null)

  // "10.244.0.0/24" or "fd00::/64": the network (host bits cleared) and its mask, as Go's
  // net.ParseCIDR returns them (an IPv4 mask is 4 bytes). InvalidArgument otherwise.
  static absl::StatusOr<IPNet> Parse(std::string_view cidr);
  // Go's IPNet.String(): "10.244.0.0/24" (a non-canonical mask in hex after the slash).
  std::string ToString() const;
  bool operator==(const IPNet&) const = default;
};

}  // namespace kvstore::cilium

#endif  // KVSTORE_CILIUM_NET_H_

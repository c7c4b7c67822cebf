// One configured etcd endpoint: what "host:port", "http://host:port" and "https://host:port" mean,
// and the gRPC target that finds it.
#ifndef KVSTORE_BACKEND_ETCD_ENDPOINT_H_
#define KVSTORE_BACKEND_ETCD_ENDPOINT_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvstore::etcd {

struct Endpoint {
  enum class Scheme { kNone, kHttp, kHttps };

  std::string host;  // without brackets for IPv6
  int port = 2379;
  Scheme scheme = Scheme::kNone;

  // host:port, IPv6 in brackets: how errors and the status name the endpoint.
  std::string Address() const;
  // The gRPC target: an address for a literal IP, else a dns:/// name that gRPC resolves itself
  // (again after failures, so a name that does not resolve yet is tried again later).
  std::string ChannelTarget() const;
  // Whether to speak TLS to it, as etcd's Go client decides: https:// always, http:// never, no
  // scheme when the configuration has TLS files.
  bool UsesTls(bool tls_files_configured) const;
};

// Parses "host:port", "http://host:port" or "https://host:port" (a trailing "/" is allowed; the
// port defaults to 2379). InvalidArgument naming the text otherwise.
absl::StatusOr<Endpoint> ParseEndpoint(std::string_view text);

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_ENDPOINT_H_

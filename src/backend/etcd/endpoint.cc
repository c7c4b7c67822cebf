#include "backend/etcd/endpoint.h"

#include <arpa/inet.h>

#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "backend/etcd/errors.h"

namespace kvstore::etcd {
namespace {

bool IsIpv4Literal(const std::string& host) {
  in_addr addr;
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool IsIpv6Literal(const std::string& host) {
  in6_addr addr;
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

}  // namespace

std::string Endpoint::Address() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

std::string Endpoint::ChannelTarget() const {
  if (IsIpv4Literal(host)) return "ipv4:" + Address();
  if (IsIpv6Literal(host)) return "ipv6:" + Address();
  return "dns:///" + Address();
}

bool Endpoint::UsesTls(bool tls_files_configured) const {
  switch (scheme) {
    case Scheme::kHttps:
      return true;
    case Scheme::kHttp:
      return false;
    case Scheme::kNone:
      break;
  }
  return tls_files_configured;
}

absl::StatusOr<Endpoint> ParseEndpoint(std::string_view text) {
  Endpoint endpoint;
  absl::string_view rest = absl::StripAsciiWhitespace(ToAbsl(text));
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("etcd endpoint '", ToAbsl(text), "': ", why));
  };
  if (absl::ConsumePrefix(&rest, "https://")) {
    endpoint.scheme = Endpoint::Scheme::kHttps;
  } else if (absl::ConsumePrefix(&rest, "http://")) {
    endpoint.scheme = Endpoint::Scheme::kHttp;
  } else if (absl::StrContains(rest, "://")) {
    return invalid("only http:// and https:// endpoints are supported");
  }
  absl::ConsumeSuffix(&rest, "/");
  if (rest.empty()) return invalid("empty address");
  absl::string_view port_text;
  if (rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == absl::string_view::npos) return invalid("unterminated '['");
    endpoint.host = std::string(rest.substr(1, close - 1));
    absl::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid("expected ':' after ']'");
      port_text = after.substr(1);
    }
  } else {
    size_t colon = rest.rfind(':');
    if (colon == absl::string_view::npos) {
      endpoint.host = std::string(rest);
    } else {
      endpoint.host = std::string(rest.substr(0, colon));
      port_text = rest.substr(colon + 1);
    }
  }
  if (endpoint.host.empty()) return invalid("empty host");
  if (endpoint.host.find_first_of("/ ,") != std::string::npos) return invalid("bad host");
  if (!port_text.empty()) {
    int port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port <= 0 ||
        port > 65535) {
      return invalid("bad port");
    }
    endpoint.port = port;
  }
  return endpoint;
}

}  // namespace kvstore::etcd

#include "backend/etcd/channel_factory.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace kvstore::etcd {
namespace {

// How often the certificate files are read again. A reconnection after a rotation uses the new
// files once they were read: within this long, well inside gRPC's reconnect backoff.
constexpr unsigned kCertificateRefreshSeconds = 1;

absl::Status CheckReadable(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd config: cannot read ", what, " '", path, "': ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(const EtcdConfig& config) {
  namespace gx = grpc::experimental;
  // The provider reads the files now and again every kCertificateRefreshSeconds (as etcd's and
  // Cilium's Go clients re-read the client certificate for every handshake), so connections made
  // after cert-manager rewrote them use the new ones.
  std::shared_ptr<gx::CertificateProviderInterface> provider;
  const bool identity = !config.cert_file.empty();
  const bool roots = !config.trusted_ca_file.empty();
  if (identity && roots) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(
        config.key_file, config.cert_file, config.trusted_ca_file, kCertificateRefreshSeconds);
  } else if (identity) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(
        config.key_file, config.cert_file, kCertificateRefreshSeconds);
  } else if (roots) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(config.trusted_ca_file,
                                                                    kCertificateRefreshSeconds);
  }
  gx::TlsChannelCredentialsOptions options;
  if (provider) {
    options.set_certificate_provider(provider);
    // Without a CA file the system's roots are trusted, as in etcd's Go client.
    if (roots) options.watch_root_certs();
    if (identity) options.watch_identity_key_cert_pairs();
  }
  if (config.insecure_skip_tls_verify) {
    options.set_verify_server_certs(false);
    options.set_check_call_host(false);
    options.set_certificate_verifier(std::make_shared<gx::NoOpCertificateVerifier>());
  } else {
    options.set_certificate_verifier(std::make_shared<gx::HostNameCertificateVerifier>());
  }
  return gx::TlsCredentials(options);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChannelFactory>> ChannelFactory::Create(
    const EtcdConfig& config, const std::vector<Endpoint>& endpoints) {
  if (config.cert_file.empty() != config.key_file.empty()) {
    return absl::InvalidArgumentError(
        "etcd config: cert-file and key-file must be given together for mutual TLS");
  }
  const bool tls_files =
      !config.insecure_transport && (!config.trusted_ca_file.empty() || !config.cert_file.empty());
  bool any_tls = false;
  for (const Endpoint& e : endpoints) {
    if (config.insecure_transport && e.scheme == Endpoint::Scheme::kHttps) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd config: insecure-transport is set, but endpoint 'https://",
                       e.Address(), "' asks for TLS"));
    }
    any_tls = any_tls || e.UsesTls(tls_files);
  }
  std::shared_ptr<grpc::ChannelCredentials> tls;
  if (any_tls) {
    if (!config.trusted_ca_file.empty()) {
      if (absl::Status s = CheckReadable(config.trusted_ca_file, "trusted-ca-file"); !s.ok()) {
        return s;
      }
    }
    if (!config.cert_file.empty()) {
      if (absl::Status s = CheckReadable(config.cert_file, "cert-file"); !s.ok()) return s;
      if (absl::Status s = CheckReadable(config.key_file, "key-file"); !s.ok()) return s;
    }
    tls = TlsCredentials(config);
  }

  grpc::ChannelArguments args;
  // Leaves out the optional filters (compression, idleness) that every call would pass through,
  // about a tenth of the client's instructions per call. Deadlines stay enforced on the client,
  // so an unresponsive member still times a call out.
  args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
  args.SetInt(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 1);
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // Detects members that stopped answering (paused, cut off) on an open connection. etcd refuses
  // pings more often than every 5 s, and pings without any call in flight.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(std::max<int64_t>(config.keepalive_time.count(), 5000)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(config.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Reconnects promptly after a member restart instead of gRPC's default of up to two minutes;
  // a connection attempt gives up after the dial timeout.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(config.dial_timeout.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Backends of one process with the same plaintext endpoint and settings share gRPC's
  // connection to it (gRPC's global subchannel pool; TLS credentials are never taken as equal,
  // so backends with TLS keep their own): with etcd gone, 50 of them make one reconnect attempt
  // per backoff step instead of 50 (client CPU while etcd was down for 30 s: 2.6% of a core
  // with a connection each, 0.9% shared; etcd_down_load_test).
  return std::unique_ptr<ChannelFactory>(new ChannelFactory(std::move(tls), args, tls_files));
}

ChannelFactory::ChannelFactory(std::shared_ptr<grpc::ChannelCredentials> tls,
                               grpc::ChannelArguments args, bool tls_files)
    : tls_(std::move(tls)), args_(std::move(args)), tls_files_(tls_files) {}

std::shared_ptr<grpc::Channel> ChannelFactory::NewChannel(const Endpoint& endpoint) const {
  grpc::ChannelArguments args = args_;
  if (!endpoint.UsesTls(tls_files_)) {
    return grpc::CreateCustomChannel(endpoint.ChannelTarget(), plain_, args);
  }
  // The member's certificate must name this endpoint's host, whatever the target resolves to.
  args.SetSslTargetNameOverride(endpoint.host);
  return grpc::CreateCustomChannel(endpoint.ChannelTarget(), tls_, args);
}

}  // namespace kvstore::etcd

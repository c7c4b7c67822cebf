#include "backend/etcd/channel_factory.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kvstore/mutex.h"
#include "spdlog/spdlog.h"

namespace kvstore::etcd {
namespace {

// How often the certificate files are looked at (their size, time and inode; read only when
// these changed): a rotation is seen within this long.
constexpr auto kCertificateCheckInterval = std::chrono::seconds(1);

absl::Status CheckReadable(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd config: cannot read ", what, " '", path, "': ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadWhole(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd config: cannot read ", what, " '", path, "': ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// What tells a rewritten file from the one read: size, modification time and inode (an atomic
// rename gives a new inode even within the time's resolution).
std::string FileSignature(const std::string& path) {
  if (path.empty()) return "-";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return absl::StrCat("error ", errno);
  return absl::StrCat(st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ":", st.st_ino);
}

// Whether `files` can be used as a whole: every certificate parses, and the key is the one of the
// certificate. A rotation caught halfway (the new certificate beside the old key) is not.
absl::Status CheckUsable(const CertificateFiles& files) {
  auto count_certs = [](const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    int n = 0;
    while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      X509_free(cert);
      ++n;
    }
    ERR_clear_error();
    BIO_free(bio);
    return n;
  };
  if (files.has_roots && count_certs(files.roots) == 0) {
    return absl::InvalidArgumentError("trusted-ca-file holds no certificate");
  }
  if (!files.has_identity) return absl::OkStatus();
  BIO* cert_bio = BIO_new_mem_buf(files.cert.data(), static_cast<int>(files.cert.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  BIO_free(cert_bio);
  BIO* key_bio = BIO_new_mem_buf(files.key.data(), static_cast<int>(files.key.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  absl::Status status;
  if (cert == nullptr) {
    status = absl::InvalidArgumentError("cert-file holds no certificate");
  } else if (key == nullptr) {
    status = absl::InvalidArgumentError("key-file holds no private key");
  } else if (X509_check_private_key(cert, key) != 1) {
    status = absl::InvalidArgumentError("key-file does not hold the key of cert-file");
  }
  ERR_clear_error();
  X509_free(cert);
  EVP_PKEY_free(key);
  return status;
}

std::shared_ptr<grpc::ChannelCredentials> TlsCredentials(const CertificateFiles& files,
                                                         bool insecure_skip_tls_verify) {
  namespace gx = grpc::experimental;
  // gRPC's provider reads the files now and again every kRefreshSeconds, on a thread of its own
  // (one per credentials: per backend, two for a moment after a rotation), so that a channel made
  // before a rotation reconnects with the new files too: a stream waiting on it for a connection
  // (one endpoint: streams wait for it) is not left behind. A rotation also makes new credentials
  // (and new channels) with the files read at once, which take the new calls once connected.
  constexpr unsigned kRefreshSeconds = 1;
  std::shared_ptr<gx::CertificateProviderInterface> provider;
  if (files.has_identity && files.has_roots) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(files.key_path, files.cert_path,
                                                                    files.ca_path, kRefreshSeconds);
  } else if (files.has_identity) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(files.key_path, files.cert_path,
                                                                    kRefreshSeconds);
  } else if (files.has_roots) {
    provider = std::make_shared<gx::FileWatcherCertificateProvider>(files.ca_path, kRefreshSeconds);
  }
  gx::TlsChannelCredentialsOptions options;
  if (provider) {
    options.set_certificate_provider(provider);
    // Without a CA file the system's roots are trusted, as in etcd's Go client.
    if (files.has_roots) options.watch_root_certs();
    if (files.has_identity) options.watch_identity_key_cert_pairs();
  }
  if (insecure_skip_tls_verify) {
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
  CertificateFiles files;
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
    files.ca_path = config.trusted_ca_file;
    files.cert_path = config.cert_file;
    files.key_path = config.key_file;
    files.has_roots = !files.ca_path.empty();
    files.has_identity = !files.cert_path.empty();
    // As read now, checked or not: what they hold is gRPC's to judge at the handshake, whose
    // failure names the problem. Only a rotation's files are checked before they replace these.
    absl::StatusOr<CertificateFiles> read = ReadCertificateFiles(files);
    if (!read.ok()) return read.status();
    files = *std::move(read);
    tls = TlsCredentials(files, config.insecure_skip_tls_verify);
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
  return std::unique_ptr<ChannelFactory>(new ChannelFactory(
      std::move(tls), std::move(files), config.insecure_skip_tls_verify, args, tls_files));
}

absl::StatusOr<CertificateFiles> ChannelFactory::ReadCertificateFiles(CertificateFiles files) {
  // The signatures first: a file rewritten while it is read shows as a change at the next check.
  files.signature = absl::StrCat(FileSignature(files.ca_path), "|", FileSignature(files.cert_path),
                                 "|", FileSignature(files.key_path));
  if (files.has_roots) {
    absl::StatusOr<std::string> roots = ReadWhole(files.ca_path, "trusted-ca-file");
    if (!roots.ok()) return roots.status();
    files.roots = *std::move(roots);
  }
  if (files.has_identity) {
    absl::StatusOr<std::string> cert = ReadWhole(files.cert_path, "cert-file");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadWhole(files.key_path, "key-file");
    if (!key.ok()) return key.status();
    files.cert = *std::move(cert);
    files.key = *std::move(key);
  }
  return files;
}

ChannelFactory::ChannelFactory(std::shared_ptr<grpc::ChannelCredentials> tls,
                               CertificateFiles files, bool insecure_skip_tls_verify,
                               grpc::ChannelArguments args, bool tls_files)
    : args_(std::move(args)),
      tls_files_(tls_files),
      insecure_skip_tls_verify_(insecure_skip_tls_verify),
      watch_files_(tls != nullptr && (files.has_roots || files.has_identity)),
      tls_(std::move(tls)),
      files_(std::move(files)),
      next_check_(std::chrono::steady_clock::now() + kCertificateCheckInterval) {}

bool ChannelFactory::UsesTls(const Endpoint& endpoint) const {
  return endpoint.UsesTls(tls_files_);
}

std::shared_ptr<grpc::Channel> ChannelFactory::NewChannel(const Endpoint& endpoint) const {
  grpc::ChannelArguments args = args_;
  if (!endpoint.UsesTls(tls_files_)) {
    return grpc::CreateCustomChannel(endpoint.ChannelTarget(), plain_, args);
  }
  std::shared_ptr<grpc::ChannelCredentials> tls;
  {
    MutexLock guard(mu_);
    tls = tls_;
  }
  // The member's certificate must name this endpoint's host, whatever the target resolves to.
  args.SetSslTargetNameOverride(endpoint.host);
  return grpc::CreateCustomChannel(endpoint.ChannelTarget(), tls, args);
}

bool ChannelFactory::CheckCertificateFiles() {
  if (!watch_files_) return false;
  CertificateFiles files;
  {
    MutexLock guard(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (checking_ || now < next_check_) return false;
    checking_ = true;  // one caller checks; the others go on at once
    next_check_ = now + kCertificateCheckInterval;
    files = files_;
  }
  bool changed = false;
  const std::string signature =
      absl::StrCat(FileSignature(files.ca_path), "|", FileSignature(files.cert_path), "|",
                   FileSignature(files.key_path));
  std::shared_ptr<grpc::ChannelCredentials> tls;
  if (signature != files.signature) {
    absl::StatusOr<CertificateFiles> read = ReadCertificateFiles(files);
    absl::Status usable = read.ok() ? CheckUsable(*read) : read.status();
    if (!usable.ok()) {
      // Kept for the next check: the rest of a rotation (the key after the certificate) changes
      // the signature again. Logged once per state of the files.
      if (signature != rejected_signature_) {
        spdlog::warn("etcd TLS files changed but cannot be used yet ({}); keeping the ones in use",
                     std::string(usable.message()));
        rejected_signature_ = signature;
      }
    } else if (read->roots == files.roots && read->cert == files.cert && read->key == files.key) {
      files.signature = read->signature;  // touched, not changed
    } else {
      files = *std::move(read);
      tls = TlsCredentials(files, insecure_skip_tls_verify_);
      changed = true;
      spdlog::info("etcd TLS files changed ({}{}{}): new connections use them",
                   files.has_roots ? "CA" : "", files.has_roots && files.has_identity ? ", " : "",
                   files.has_identity ? "client certificate and key" : "");
    }
  }
  MutexLock guard(mu_);
  checking_ = false;
  files_.signature = files.signature;
  if (changed) {
    files_ = std::move(files);
    tls_ = std::move(tls);
  }
  return changed;
}

}  // namespace kvstore::etcd

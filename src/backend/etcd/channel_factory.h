// How the backend's gRPC channels are made: TLS credentials (mutual TLS, each member checked
// against its own host name) or plain text, and the channel arguments (keep-alive pings, reconnect
// backoff, message sizes). The certificate files are looked at again, at most once a second, by
// whoever picks an endpoint next: once they changed and hold a usable set, channels made from then
// on use new credentials that read them at once (ChannelPool replaces its channels). Existing
// channels reconnect with the new files too (gRPC's file watcher re-reads them every second).
#ifndef KVSTORE_BACKEND_ETCD_CHANNEL_FACTORY_H_
#define KVSTORE_BACKEND_ETCD_CHANNEL_FACTORY_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "backend/etcd/endpoint.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/mutex.h"

namespace kvstore::etcd {

// The TLS files of a configuration and what they held when read.
struct CertificateFiles {
  std::string ca_path, cert_path, key_path;
  bool has_roots = false, has_identity = false;
  std::string roots, cert, key;  // PEM, as read
  std::string signature;         // sizes, times and inodes of the files when read
};

class ChannelFactory {
 public:
  // Checks the TLS settings against `endpoints` (files readable, cert and key together, no
  // https:// endpoint with insecure_transport) and prepares the credentials. InvalidArgument
  // naming the problem.
  static absl::StatusOr<std::unique_ptr<ChannelFactory>> Create(
      const EtcdConfig& config, const std::vector<Endpoint>& endpoints);
  ChannelFactory(const ChannelFactory&) = delete;
  ChannelFactory& operator=(const ChannelFactory&) = delete;

  // A new channel to `endpoint` alone, with the certificate files as last read; it does not
  // connect until used. Over TLS, the member's certificate must be valid for the endpoint's host.
  std::shared_ptr<grpc::Channel> NewChannel(const Endpoint& endpoint) const;
  bool UsesTls(const Endpoint& endpoint) const;

  // True when the certificate files changed since they were last read and now hold a usable set
  // (certificates that parse, the key of the certificate): NewChannel uses them from now on. Looks
  // at the files (stat) at most once a second, reads them only when they changed; a set that
  // cannot be used (a rotation caught halfway) is logged once and left until it changes again.
  // Cheap and never blocking otherwise (one caller checks, the others return false). Thread-safe.
  bool CheckCertificateFiles();

 private:
  ChannelFactory(std::shared_ptr<grpc::ChannelCredentials> tls, CertificateFiles files,
                 bool insecure_skip_tls_verify, grpc::ChannelArguments args, bool tls_files);
  // `files` with their contents and signature read now.
  static absl::StatusOr<CertificateFiles> ReadCertificateFiles(CertificateFiles files);

  const std::shared_ptr<grpc::ChannelCredentials> plain_ = grpc::InsecureChannelCredentials();
  const grpc::ChannelArguments args_;
  const bool tls_files_;  // TLS files given: endpoints without a scheme speak TLS
  const bool insecure_skip_tls_verify_;
  const bool watch_files_;  // some TLS file is given and used

  mutable Mutex mu_;
  // Shared by every TLS channel made since the files were last read.
  std::shared_ptr<grpc::ChannelCredentials> tls_ ABSL_GUARDED_BY(mu_);
  CertificateFiles files_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point next_check_ ABSL_GUARDED_BY(mu_);
  bool checking_ ABSL_GUARDED_BY(mu_) = false;  // a caller is checking the files
  // The files' signature last refused as unusable; only the caller that set checking_ (one at a
  // time) touches it.
  std::string rejected_signature_;
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_CHANNEL_FACTORY_H_

// How the backend's gRPC channels are made: TLS credentials (mutual TLS, certificate files read
// again as they change, each member checked against its own host name) or plain text, and the
// channel arguments (keep-alive pings, reconnect backoff, message sizes).
#ifndef KVSTORE_BACKEND_ETCD_CHANNEL_FACTORY_H_
#define KVSTORE_BACKEND_ETCD_CHANNEL_FACTORY_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "backend/etcd/endpoint.h"
#include "kvstore/etcd/etcd_backend.h"

namespace kvstore::etcd {

class ChannelFactory {
 public:
  // Checks the TLS settings against `endpoints` (files readable, cert and key together, no
  // https:// endpoint with insecure_transport) and prepares the credentials. InvalidArgument
  // naming the problem.
  static absl::StatusOr<std::unique_ptr<ChannelFactory>> Create(
      const EtcdConfig& config, const std::vector<Endpoint>& endpoints);
  ChannelFactory(const ChannelFactory&) = delete;
  ChannelFactory& operator=(const ChannelFactory&) = delete;

  // A new channel to `endpoint` alone; it does not connect until used. Over TLS, the member's
  // certificate must be valid for the endpoint's host.
  std::shared_ptr<grpc::Channel> NewChannel(const Endpoint& endpoint) const;

 private:
  ChannelFactory(std::shared_ptr<grpc::ChannelCredentials> tls, grpc::ChannelArguments args,
                 bool tls_files);

  // Shared by every TLS channel: one watcher of the certificate files for all of them.
  const std::shared_ptr<grpc::ChannelCredentials> tls_;
  const std::shared_ptr<grpc::ChannelCredentials> plain_ = grpc::InsecureChannelCredentials();
  const grpc::ChannelArguments args_;
  const bool tls_files_;  // TLS files given: endpoints without a scheme speak TLS
};

}  // namespace kvstore::etcd

#endif  // KVSTORE_BACKEND_ETCD_CHANNEL_FACTORY_H_

#include "backend_flags.h"

#include "kvstore/etcd/etcd_backend.h"

namespace kvstorectl {

void BackendFlags::AddTo(CLI::App& app) {
  app.add_option("--endpoints", endpoints,
                 "etcd endpoints (host:port or http(s)://host:port, comma-separated); "
                 "without them the embedded in-memory store of this process is used")
      ->delimiter(',');
  app.add_option("--etcd-config", etcd_config, "Cilium-style etcd config YAML file")
      ->check(CLI::ExistingFile);
}

absl::StatusOr<kvstore::etcd::EtcdConfig> BackendFlags::EtcdConfig() const {
  kvstore::etcd::EtcdConfig config;
  if (!etcd_config.empty()) {
    auto from_file = kvstore::etcd::EtcdConfig::FromFile(etcd_config);
    if (!from_file.ok()) return from_file.status();
    config = *std::move(from_file);
  }
  if (!endpoints.empty()) config.endpoints = endpoints;
  return config;
}

absl::StatusOr<std::shared_ptr<kvstore::Backend>> BackendFlags::Open() const {
  if (!UsesEtcd()) return kvstore::DefaultClient();
  auto config = EtcdConfig();
  if (!config.ok()) return config.status();
  return kvstore::etcd::NewEtcdBackend(*std::move(config));
}

}  // namespace kvstorectl

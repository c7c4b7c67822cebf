#include "backend_flags.h"

#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/memory/in_memory_store.h"

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

absl::StatusOr<std::shared_ptr<kvstore::Backend>> BackendFlags::Open(
    const OpenOptions& options) const {
  const bool ttl_given = options.lease_ttl.count() > 0;
  if (!UsesEtcd()) {
    if (options.metrics == nullptr && !ttl_given) return kvstore::DefaultClient();
    kvstore::memory::InMemoryOptions memory_options;
    if (ttl_given) memory_options.lease_ttl = options.lease_ttl;
    memory_options.metrics = options.metrics;
    return kvstore::memory::InMemoryStore::Create(std::move(memory_options))
        ->NewClient("kvstorectl");
  }
  auto config = EtcdConfig();
  if (!config.ok()) return config.status();
  if (ttl_given) config->lease_ttl = options.lease_ttl;
  config->metrics = options.metrics;
  return kvstore::etcd::NewEtcdBackend(*std::move(config));
}

}  // namespace kvstorectl

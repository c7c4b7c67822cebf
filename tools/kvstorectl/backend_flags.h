// How every command picks its backend: etcd (--endpoints / --etcd-config) or the embedded store.
#ifndef KVSTORE_TOOLS_KVSTORECTL_BACKEND_FLAGS_H_
#define KVSTORE_TOOLS_KVSTORECTL_BACKEND_FLAGS_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "kvstore/backend.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/store/metrics.h"

namespace kvstorectl {

// What a long-running command adds to the backend it opens.
struct OpenOptions {
  std::shared_ptr<kvstore::store::Metrics> metrics;  // null: none recorded
  std::chrono::seconds lease_ttl{0};                 // 0: the backend's default
};

struct BackendFlags {
  std::vector<std::string> endpoints;
  std::string etcd_config;

  // Adds --endpoints and --etcd-config to `app`.
  void AddTo(CLI::App& app);
  bool UsesEtcd() const { return !endpoints.empty() || !etcd_config.empty(); }
  // The etcd configuration the flags describe (--etcd-config, then --endpoints over it).
  absl::StatusOr<kvstore::etcd::EtcdConfig> EtcdConfig() const;
  // An etcd backend when flags name one, else an embedded in-memory client: the process-wide one,
  // or, when `options` ask for metrics or a lease TTL, one of a store made for this process.
  absl::StatusOr<std::shared_ptr<kvstore::Backend>> Open(const OpenOptions& options = {}) const;
};

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_BACKEND_FLAGS_H_

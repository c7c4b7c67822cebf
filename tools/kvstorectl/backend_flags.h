// How every command picks its backend: etcd (--endpoints / --etcd-config) or the embedded store.
#ifndef KVSTORE_TOOLS_KVSTORECTL_BACKEND_FLAGS_H_
#define KVSTORE_TOOLS_KVSTORECTL_BACKEND_FLAGS_H_

#include <memory>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "kvstore/backend.h"
#include "kvstore/etcd/etcd_backend.h"

namespace kvstorectl {

struct BackendFlags {
  std::vector<std::string> endpoints;
  std::string etcd_config;

  // Adds --endpoints and --etcd-config to `app`.
  void AddTo(CLI::App& app);
  bool UsesEtcd() const { return !endpoints.empty() || !etcd_config.empty(); }
  // The etcd configuration the flags describe (--etcd-config, then --endpoints over it).
  absl::StatusOr<kvstore::etcd::EtcdConfig> EtcdConfig() const;
  // An etcd backend when flags name one, else the process-wide embedded in-memory client.
  absl::StatusOr<std::shared_ptr<kvstore::Backend>> Open() const;
};

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_BACKEND_FLAGS_H_

// The etcd v3 backend over gRPC: the distributed engine.
#ifndef KVSTORE_ETCD_ETCD_BACKEND_H_
#define KVSTORE_ETCD_ETCD_BACKEND_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/backend.h"
#include "kvstore/export.h"

namespace kvstore {
class BackendMetrics;  // kvstore/backend_metrics.h; a store::Metrics is one
}  // namespace kvstore

namespace kvstore::etcd {

struct KVSTORE_EXPORT EtcdConfig {
  // "host:port" or "http(s)://host:port"; several: fail-over. https:// speaks TLS, http:// never,
  // no scheme when TLS files are given. Each member's certificate is checked against the host of
  // its own endpoint. Names are resolved by gRPC (again when they fail).
  std::vector<std::string> endpoints;
  // TLS; cert+key: mutual TLS. Read again whenever a connection is (re)established, so rotated
  // files (cert-manager) are used without a restart.
  std::string trusted_ca_file, cert_file, key_file;
  // No TLS at all, whatever files are given (an https:// endpoint is then an error).
  bool insecure_transport = false;
  // TLS without checking the server's certificate (etcd's insecure-skip-tls-verify): for tests
  // only, it lets anyone in the middle read and change everything.
  bool insecure_skip_tls_verify = false;
  std::string username, password;  // etcd auth (token refreshed when it expires)
  std::chrono::seconds lease_ttl{15 * 60};
  size_t max_keys_per_lease = 1000;
  size_t list_page_size = 0;  // 0: the library's measured default, bounded in bytes
  double qps = 0;             // 0: no rate limit (Cilium's etcd.qps)
  // Requests a second until bootstrap completes: until the first watcher of this backend has
  // received its initial list (Cilium's etcd.bootstrapQps). 0: `qps` from the start.
  double bootstrap_qps = 0;
  // Requests in flight at once, retries included (Cilium's etcd.maxInflight). 0: as many as
  // `qps` (rounded up) when `qps` is set, as in Cilium; else no limit.
  size_t max_inflight = 0;
  std::chrono::milliseconds dial_timeout{5000}, request_timeout{15000};
  // Pings on open connections detect members that stopped answering (paused, cut off): a member
  // silent for keepalive_time + keepalive_timeout is given up. etcd refuses pings more often than
  // every 5 s, so keepalive_time is at least that.
  std::chrono::milliseconds keepalive_time{10000}, keepalive_timeout{5000};
  // When set, the backend records its operations, watch event queue times and leases here
  // (cilium_kvstore_operations_duration_seconds, _events_queue_seconds, _leases).
  std::shared_ptr<BackendMetrics> metrics = nullptr;

  // Reads Cilium's etcd config YAML (etcd's Go client format): endpoints, trusted-ca-file (or
  // its older name ca-file), cert-file, key-file, username, password, insecure-transport,
  // insecure-skip-tls-verify, dial-timeout, dial-keep-alive-time, dial-keep-alive-timeout
  // (durations as "5s", or a number of nanoseconds as in Go), and the load limits under the
  // names Cilium's kvstore-opt gives them: etcd.qps, etcd.bootstrapQps, etcd.maxInflight (a
  // number each; empty, negative or not a number is an error, never "no limit"). Keys of etcd's
  // client that have no effect here, and unknown keys, are logged once each as a warning naming
  // them. InvalidArgument naming the file for anything it cannot use.
  static absl::StatusOr<EtcdConfig> FromFile(const std::string& path);
};

// Does not wait for a connection: operations on an unreachable cluster fail with Unavailable or
// DeadlineExceeded after request_timeout; watchers keep retrying.
KVSTORE_EXPORT absl::StatusOr<std::shared_ptr<Backend>> NewEtcdBackend(EtcdConfig config);

}  // namespace kvstore::etcd

#endif  // KVSTORE_ETCD_ETCD_BACKEND_H_

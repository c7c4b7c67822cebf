// Real etcd for tests: starts `etcd` processes (1 or 3 members) on free loopback ports with
// temporary data directories, and drives them from the side (stop, kill -9, restart, pause,
// compact, revoke a lease, enable auth) through signals and `etcdctl`. Everything it started is
// killed and removed by the destructor, also when a test fails; the processes also die with the
// test process (PR_SET_PDEATHSIG).
#ifndef KVSTORE_TESTS_SUPPORT_ETCD_FIXTURE_H_
#define KVSTORE_TESTS_SUPPORT_ETCD_FIXTURE_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/etcd/etcd_backend.h"

namespace kvstore::testing {

struct CommandResult {
  int exit_code = -1;  // -1: could not run, or killed after the timeout
  std::string output;  // stdout and stderr together
};

// Runs `argv` (argv[0] looked up in PATH), capturing its output; killed after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));

// `n` distinct TCP ports on `host` (a loopback address) that were free a moment ago (bound to
// port 0 together).
std::vector<int> FreeLoopbackPorts(int n, const std::string& host = "127.0.0.1");

// A fresh temporary directory (in /dev/shm when possible: etcd's fsyncs are then cheap).
absl::StatusOr<std::string> MakeTempDir(const std::string& name);
void RemoveTree(const std::string& path);

// Certificates made with `openssl` in `dir`: a CA, a server certificate for 127.0.0.1 /
// localhost and a client certificate signed by it, and an unrelated CA (to check that a wrong CA
// fails). With `member_hosts`, also one server certificate per host, valid for that IP only (the
// production layout of a cluster whose members each hold their own certificate).
struct TlsFiles {
  std::string ca_cert, server_cert, server_key, client_cert, client_key, other_ca_cert;
  std::vector<std::string> member_certs, member_keys;  // by member, when generated
};
absl::StatusOr<TlsFiles> GenerateTlsFiles(const std::string& dir,
                                          const std::vector<std::string>& member_hosts = {});

struct EtcdClusterOptions {
  int members = 1;
  // When set, clients must speak TLS with a certificate signed by tls->ca_cert. Member i serves
  // tls->member_certs[i] when there are such, else tls->server_cert.
  const TlsFiles* tls = nullptr;
  // The loopback address of each member (e.g. 127.0.0.1, 127.0.0.2, 127.0.0.3); empty: all on
  // 127.0.0.1.
  std::vector<std::string> member_hosts;
  std::vector<std::string> extra_args;
};

class EtcdCluster {
 public:
  // Starts the members and waits (up to 30 s) until every one answers health checks.
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(EtcdClusterOptions options = {});
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;
  ~EtcdCluster();  // kills every member, removes the data

  int size() const { return static_cast<int>(members_.size()); }
  // "host:port" ("https://host:port" with TLS).
  std::string ClientEndpoint(int member) const;
  std::vector<std::string> ClientEndpoints() const;
  // A client config for all members (TLS files and credentials filled in when used), with short
  // timeouts suited to tests.
  etcd::EtcdConfig ClientConfig() const;
  // Directory for a test's own files, removed with the cluster.
  const std::string& dir() const { return dir_; }

  absl::Status StopMember(int member);    // SIGTERM, waits for the exit
  absl::Status KillMember(int member);    // SIGKILL, waits for the exit
  absl::Status StartMember(int member);   // after Stop/Kill: same ports and data; waits healthy
  absl::Status PauseMember(int member);   // SIGSTOP, waits until every thread has stopped
  absl::Status ResumeMember(int member);  // SIGCONT, waits until it runs again
  bool IsRunning(int member) const;
  absl::Status WaitHealthy(int member, std::chrono::milliseconds timeout);

  // Runs etcdctl against the running members (or one), with TLS and credentials as needed.
  absl::StatusOr<std::string> Etcdctl(const std::vector<std::string>& args, int member = -1);
  absl::StatusOr<int> LeaderIndex();
  absl::StatusOr<int64_t> Revision();
  // Compacts the history up to `revision` (0: the current revision).
  absl::Status Compact(int64_t revision = 0);
  absl::Status RevokeLease(int64_t id);
  // Creates user root with `password` and turns authentication on; etcdctl then logs in as root.
  absl::Status EnableAuth(const std::string& password);

 private:
  struct Member {
    std::string name, data_dir, log_file, host;
    int client_port = 0, peer_port = 0;
    pid_t pid = -1;
  };
  EtcdCluster() = default;
  std::vector<std::string> MemberArgs(int member) const;
  absl::Status Spawn(int member);
  absl::Status Signal(int member, int signal, bool wait_exit);
  std::string LogTail(int member) const;

  EtcdClusterOptions options_;
  TlsFiles tls_;
  bool has_tls_ = false;
  std::string dir_;
  std::vector<Member> members_;
  std::string root_password_;  // set once auth is on
};

// A TCP relay from a local port to a target port, for cutting the network under a client.
class TcpProxy {
 public:
  explicit TcpProxy(int target_port);
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;
  ~TcpProxy();

  int port() const { return port_; }
  std::string Endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  // Closes every relayed connection and refuses new ones (accepted, then closed) until Restore.
  void Cut();
  void Restore();

 private:
  void Loop();

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_pipe_[2] = {-1, -1};
  std::thread thread_;
  struct Shared;
  std::unique_ptr<Shared> shared_;
};

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_ETCD_FIXTURE_H_

#include "tests/support/etcd_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "tests/support/eventually.h"

namespace kvstore::testing {
namespace {

using Clock = std::chrono::steady_clock;

// argv for execvp, prepared before fork (the child may only make async-signal-safe calls).
struct Argv {
  explicit Argv(const std::vector<std::string>& args) : strings(args) {
    for (std::string& s : strings) pointers.push_back(s.data());
    pointers.push_back(nullptr);
  }
  std::vector<std::string> strings;
  std::vector<char*> pointers;
};

// Polls waitpid(pid, WNOHANG | options) for up to `timeout`: the status of the change it
// reported (termination, and with WUNTRACED a stop, with WCONTINUED a resumption), or nullopt
// when none came. A child already reaped (ECHILD) counts as exited with status 0.
std::optional<int> PollChild(pid_t pid, int options, std::chrono::milliseconds timeout) {
  int status = 0;
  bool changed = Eventually(
      [&] {
        pid_t r = waitpid(pid, &status, WNOHANG | options);
        if (r < 0 && errno == ECHILD) {
          status = 0;
          return true;
        }
        return r == pid;
      },
      timeout);
  return changed ? std::optional<int>(status) : std::nullopt;
}

// Waits up to `timeout` for `pid` to exit; true when it did (and was reaped).
bool WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  return PollChild(pid, 0, timeout).has_value();
}

std::string Hex(int64_t id) {
  std::ostringstream out;
  out << std::hex << id;
  return out.str();
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  CommandResult result;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return result;
  Argv args(argv);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return result;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    execvp(args.pointers[0], args.pointers.data());
    _exit(127);
  }
  close(fds[1]);
  auto deadline = Clock::now() + timeout;
  bool timed_out = false;
  char buffer[4096];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buffer, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = (!timed_out && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  return result;
}

std::vector<int> FreeLoopbackPorts(int n, const std::string& host) {
  std::vector<int> sockets, ports;
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd >= 0) close(fd);
      continue;
    }
    sockets.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : sockets) close(fd);
  return ports;
}

absl::StatusOr<std::string> MakeTempDir(const std::string& name) {
  for (const char* base : {"/dev/shm", "/tmp"}) {
    std::string pattern = absl::StrCat(base, "/kvstore-", name, "-XXXXXX");
    if (mkdtemp(pattern.data()) != nullptr) return pattern;
  }
  return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

absl::StatusOr<TlsFiles> GenerateTlsFiles(const std::string& dir,
                                          const std::vector<std::string>& member_hosts) {
  TlsFiles files;
  files.ca_cert = dir + "/ca.crt";
  files.server_cert = dir + "/server.crt";
  files.server_key = dir + "/server.key";
  files.client_cert = dir + "/client.crt";
  files.client_key = dir + "/client.key";
  files.other_ca_cert = dir + "/other-ca.crt";
  {
    std::ofstream(dir + "/server.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                       << "extendedKeyUsage=serverAuth,clientAuth\n";
    std::ofstream(dir + "/client.ext") << "extendedKeyUsage=clientAuth\n";
  }
  const std::vector<std::string> ec_key = {"-newkey", "ec", "-pkeyopt",
                                           "ec_paramgen_curve:prime256v1", "-nodes"};
  auto req = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {"openssl", "req"};
    argv.insert(argv.end(), ec_key.begin(), ec_key.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  };
  std::vector<std::vector<std::string>> steps = {
      req({"-x509", "-days", "2", "-subj", "/CN=kvstore-test-ca", "-keyout", dir + "/ca.key",
           "-out", files.ca_cert}),
      req({"-x509", "-days", "2", "-subj", "/CN=kvstore-other-ca", "-keyout", dir + "/other-ca.key",
           "-out", files.other_ca_cert}),
      req({"-subj", "/CN=etcd-server", "-keyout", files.server_key, "-out", dir + "/server.csr"}),
      {"openssl", "x509", "-req", "-in", dir + "/server.csr", "-CA", files.ca_cert, "-CAkey",
       dir + "/ca.key", "-CAcreateserial", "-days", "2", "-extfile", dir + "/server.ext", "-out",
       files.server_cert},
      req({"-subj", "/CN=kvstore-client", "-keyout", files.client_key, "-out",
           dir + "/client.csr"}),
      {"openssl", "x509", "-req", "-in", dir + "/client.csr", "-CA", files.ca_cert, "-CAkey",
       dir + "/ca.key", "-CAcreateserial", "-days", "2", "-extfile", dir + "/client.ext", "-out",
       files.client_cert},
  };
  for (size_t i = 0; i < member_hosts.size(); ++i) {
    const std::string base = absl::StrCat(dir, "/member", i);
    std::ofstream(base + ".ext") << "subjectAltName=IP:" << member_hosts[i] << "\n"
                                 << "extendedKeyUsage=serverAuth,clientAuth\n";
    files.member_certs.push_back(base + ".crt");
    files.member_keys.push_back(base + ".key");
    steps.push_back(req({"-subj", absl::StrCat("/CN=etcd-member-", i), "-keyout", base + ".key",
                         "-out", base + ".csr"}));
    steps.push_back({"openssl", "x509", "-req", "-in", base + ".csr", "-CA", files.ca_cert,
                     "-CAkey", dir + "/ca.key", "-CAcreateserial", "-days", "2", "-extfile",
                     base + ".ext", "-out", base + ".crt"});
  }
  for (const auto& step : steps) {
    CommandResult r = RunCommand(step);
    if (r.exit_code != 0) {
      return absl::InternalError(absl::StrCat(absl::StrJoin(step, " "), " failed: ", r.output));
    }
  }
  return files;
}

// --- EtcdCluster ---

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(EtcdClusterOptions options) {
  absl::Status last_error;
  // Ports picked by binding port 0 may be taken again before etcd binds them: retry with others.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<EtcdCluster> cluster(new EtcdCluster());
    cluster->options_ = options;
    if (options.tls) {
      cluster->tls_ = *options.tls;
      cluster->has_tls_ = true;
    }
    absl::StatusOr<std::string> dir = MakeTempDir("etcd");
    if (!dir.ok()) return dir.status();
    cluster->dir_ = *dir;
    if (!options.member_hosts.empty() &&
        static_cast<int>(options.member_hosts.size()) != options.members) {
      return absl::InvalidArgumentError("member_hosts must name every member");
    }
    for (int i = 0; i < options.members; ++i) {
      Member m;
      m.host = options.member_hosts.empty() ? "127.0.0.1" : options.member_hosts[i];
      std::vector<int> ports = FreeLoopbackPorts(2, m.host);
      if (ports.size() != 2) return absl::InternalError("no free loopback ports on " + m.host);
      m.name = absl::StrCat("m", i);
      m.data_dir = absl::StrCat(cluster->dir_, "/", m.name);
      m.log_file = absl::StrCat(cluster->dir_, "/", m.name, ".log");
      m.client_port = ports[0];
      m.peer_port = ports[1];
      cluster->members_.push_back(m);
    }
    absl::Status status;
    for (int i = 0; i < options.members && status.ok(); ++i) status = cluster->Spawn(i);
    for (int i = 0; i < options.members && status.ok(); ++i) {
      status = cluster->WaitHealthy(i, std::chrono::seconds(30));
    }
    if (status.ok()) return cluster;
    last_error = status;
  }
  return last_error;
}

EtcdCluster::~EtcdCluster() {
  for (Member& m : members_) {
    if (m.pid > 0) {
      kill(m.pid, SIGKILL);
      WaitExit(m.pid, std::chrono::seconds(10));
      m.pid = -1;
    }
  }
  if (!dir_.empty()) RemoveTree(dir_);
}

std::string EtcdCluster::ClientEndpoint(int member) const {
  return absl::StrCat(has_tls_ ? "https://" : "", members_[member].host, ":",
                      members_[member].client_port);
}

std::vector<std::string> EtcdCluster::ClientEndpoints() const {
  std::vector<std::string> endpoints;
  for (int i = 0; i < size(); ++i) endpoints.push_back(ClientEndpoint(i));
  return endpoints;
}

etcd::EtcdConfig EtcdCluster::ClientConfig() const {
  etcd::EtcdConfig config;
  config.endpoints = ClientEndpoints();
  if (has_tls_) {
    config.trusted_ca_file = tls_.ca_cert;
    config.cert_file = tls_.client_cert;
    config.key_file = tls_.client_key;
  }
  if (!root_password_.empty()) {
    config.username = "root";
    config.password = root_password_;
  }
  config.dial_timeout = std::chrono::seconds(2);
  config.request_timeout = std::chrono::seconds(5);
  config.keepalive_time = std::chrono::seconds(5);
  config.keepalive_timeout = std::chrono::seconds(2);
  return config;
}

std::vector<std::string> EtcdCluster::MemberArgs(int member) const {
  const Member& m = members_[member];
  std::string scheme = has_tls_ ? "https" : "http";
  std::vector<std::string> initial;
  for (const Member& other : members_) {
    initial.push_back(absl::StrCat(other.name, "=http://", other.host, ":", other.peer_port));
  }
  std::string client_url = absl::StrCat(scheme, "://", m.host, ":", m.client_port);
  std::vector<std::string> args = {
      "etcd",
      "--name=" + m.name,
      "--data-dir=" + m.data_dir,
      "--listen-client-urls=" + client_url,
      "--advertise-client-urls=" + client_url,
      absl::StrCat("--listen-peer-urls=http://", m.host, ":", m.peer_port),
      absl::StrCat("--initial-advertise-peer-urls=http://", m.host, ":", m.peer_port),
      "--initial-cluster=" + absl::StrJoin(initial, ","),
      "--initial-cluster-state=new",
      "--initial-cluster-token=kvstore-test",
      "--logger=zap",
      "--log-outputs=stderr",
      // Fast elections keep fail-over tests short.
      "--heartbeat-interval=50",
      "--election-timeout=500",
      // Room for a value of kMaxValueBytes plus its key and the request's framing.
      "--max-request-bytes=1638400",
  };
  if (has_tls_) {
    const bool own = static_cast<size_t>(member) < tls_.member_certs.size();
    args.push_back("--cert-file=" + (own ? tls_.member_certs[member] : tls_.server_cert));
    args.push_back("--key-file=" + (own ? tls_.member_keys[member] : tls_.server_key));
    args.push_back("--trusted-ca-file=" + tls_.ca_cert);
    args.push_back("--client-cert-auth");
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  return args;
}

absl::Status EtcdCluster::Spawn(int member) {
  Member& m = members_[member];
  Argv args(MemberArgs(member));
  std::string log_file = m.log_file;
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int log = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (log >= 0) {
      dup2(log, 1);
      dup2(log, 2);
    }
    execvp(args.pointers[0], args.pointers.data());
    _exit(127);
  }
  m.pid = pid;
  return absl::OkStatus();
}

bool EtcdCluster::IsRunning(int member) const { return members_[member].pid > 0; }

std::string EtcdCluster::LogTail(int member) const {
  std::ifstream in(members_[member].log_file);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

absl::Status EtcdCluster::WaitHealthy(int member, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::string last;
  while (Clock::now() < deadline) {
    Member& m = members_[member];
    if (m.pid <= 0) return absl::FailedPreconditionError(m.name + " is not running");
    int status = 0;
    if (waitpid(m.pid, &status, WNOHANG) == m.pid) {
      m.pid = -1;
      return absl::InternalError(
          absl::StrCat("etcd member ", m.name, " exited during start-up:\n", LogTail(member)));
    }
    absl::StatusOr<std::string> out = Etcdctl({"endpoint", "health"}, member);
    if (out.ok()) return absl::OkStatus();
    last = out.status().ToString();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("etcd member ", members_[member].name,
                                                  " not healthy: ", last, "\n", LogTail(member)));
}

absl::Status EtcdCluster::Signal(int member, int signal, bool wait_exit) {
  Member& m = members_[member];
  if (m.pid <= 0) return absl::FailedPreconditionError(m.name + " is not running");
  if (kill(m.pid, signal) != 0) {
    return absl::InternalError(absl::StrCat("kill ", m.name, ": ", std::strerror(errno)));
  }
  if (signal == SIGSTOP || signal == SIGCONT) {
    // kill() returns before the signal has taken effect: a member sent SIGSTOP may still answer
    // a request sent right after it. waitpid reports the stop once every thread has stopped.
    const bool stop = signal == SIGSTOP;
    std::optional<int> changed =
        PollChild(m.pid, stop ? WUNTRACED : WCONTINUED, std::chrono::seconds(10));
    if (!changed) {
      return absl::DeadlineExceededError(
          absl::StrCat(m.name, " did not ", stop ? "stop" : "resume", " within 10 s"));
    }
    if (WIFEXITED(*changed) || WIFSIGNALED(*changed)) {
      m.pid = -1;  // reaped
      return absl::InternalError(absl::StrCat(m.name, " exited"));
    }
  }
  if (!wait_exit) return absl::OkStatus();
  if (!WaitExit(m.pid, std::chrono::seconds(15))) {
    kill(m.pid, SIGKILL);
    WaitExit(m.pid, std::chrono::seconds(5));
  }
  m.pid = -1;
  return absl::OkStatus();
}

absl::Status EtcdCluster::StopMember(int member) { return Signal(member, SIGTERM, true); }
absl::Status EtcdCluster::KillMember(int member) { return Signal(member, SIGKILL, true); }
absl::Status EtcdCluster::PauseMember(int member) { return Signal(member, SIGSTOP, false); }
absl::Status EtcdCluster::ResumeMember(int member) { return Signal(member, SIGCONT, false); }

absl::Status EtcdCluster::StartMember(int member) {
  if (members_[member].pid > 0) return absl::FailedPreconditionError("member is running");
  if (absl::Status s = Spawn(member); !s.ok()) return s;
  return WaitHealthy(member, std::chrono::seconds(30));
}

absl::StatusOr<std::string> EtcdCluster::Etcdctl(const std::vector<std::string>& args, int member) {
  std::vector<std::string> endpoints;
  for (int i = 0; i < size(); ++i) {
    if ((member < 0 || member == i) && members_[i].pid > 0) endpoints.push_back(ClientEndpoint(i));
  }
  if (endpoints.empty()) return absl::FailedPreconditionError("no etcd member is running");
  std::vector<std::string> argv = {"etcdctl", "--endpoints=" + absl::StrJoin(endpoints, ","),
                                   "--dial-timeout=2s", "--command-timeout=5s"};
  if (has_tls_) {
    argv.push_back("--cacert=" + tls_.ca_cert);
    argv.push_back("--cert=" + tls_.client_cert);
    argv.push_back("--key=" + tls_.client_key);
  }
  if (!root_password_.empty()) argv.push_back("--user=root:" + root_password_);
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv, std::chrono::seconds(20));
  if (r.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("etcdctl ", absl::StrJoin(args, " "), " failed: ", r.output));
  }
  return r.output;
}

absl::StatusOr<int> EtcdCluster::LeaderIndex() {
  absl::StatusOr<std::string> out = Etcdctl({"endpoint", "status", "-w", "json"});
  if (!out.ok()) return out.status();
  nlohmann::json statuses = nlohmann::json::parse(*out, nullptr, /*allow_exceptions=*/false);
  if (!statuses.is_array()) return absl::InternalError("etcdctl endpoint status: " + *out);
  for (const auto& entry : statuses) {
    const auto& status = entry["Status"];
    if (status["leader"] != status["header"]["member_id"]) continue;
    std::string endpoint = entry["Endpoint"].get<std::string>();
    for (int i = 0; i < size(); ++i) {
      if (endpoint == ClientEndpoint(i)) return i;
    }
  }
  return absl::UnavailableError("no leader among the running members");
}

absl::StatusOr<int64_t> EtcdCluster::Revision() {
  absl::StatusOr<std::string> out = Etcdctl({"endpoint", "status", "-w", "json"});
  if (!out.ok()) return out.status();
  nlohmann::json statuses = nlohmann::json::parse(*out, nullptr, false);
  if (!statuses.is_array()) return absl::InternalError("etcdctl endpoint status: " + *out);
  int64_t revision = 0;
  for (const auto& entry : statuses) {
    revision = std::max(revision, entry["Status"]["header"]["revision"].get<int64_t>());
  }
  return revision;
}

absl::Status EtcdCluster::Compact(int64_t revision) {
  if (revision == 0) {
    absl::StatusOr<int64_t> current = Revision();
    if (!current.ok()) return current.status();
    revision = *current;
  }
  return Etcdctl({"compact", std::to_string(revision), "--physical"}).status();
}

absl::Status EtcdCluster::RevokeLease(int64_t id) {
  return Etcdctl({"lease", "revoke", Hex(id)}).status();
}

absl::Status EtcdCluster::EnableAuth(const std::string& password) {
  if (absl::Status s = Etcdctl({"user", "add", "root", "--new-user-password=" + password}).status();
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Etcdctl({"auth", "enable"}).status(); !s.ok()) return s;
  root_password_ = password;
  return absl::OkStatus();
}

// --- TcpProxy ---

struct TcpProxy::Shared {
  std::mutex mu;
  std::condition_variable cv;
  bool cut = false;
  bool stop = false;
  uint64_t cut_requests = 0, cuts_done = 0;
};

TcpProxy::TcpProxy(int target_port) : target_port_(target_port), shared_(new Shared()) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  listen(listen_fd_, 64);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  if (pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) wake_pipe_[0] = wake_pipe_[1] = -1;
  thread_ = std::thread([this] { Loop(); });
}

TcpProxy::~TcpProxy() {
  {
    std::lock_guard<std::mutex> guard(shared_->mu);
    shared_->stop = true;
  }
  char c = 0;
  (void)!write(wake_pipe_[1], &c, 1);
  thread_.join();
  close(listen_fd_);
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
}

void TcpProxy::Cut() {
  std::unique_lock<std::mutex> lock(shared_->mu);
  shared_->cut = true;
  uint64_t request = ++shared_->cut_requests;
  char c = 0;
  (void)!write(wake_pipe_[1], &c, 1);
  shared_->cv.wait(lock, [&] { return shared_->cuts_done >= request || shared_->stop; });
}

void TcpProxy::Restore() {
  std::lock_guard<std::mutex> guard(shared_->mu);
  shared_->cut = false;
}

void TcpProxy::Loop() {
  std::vector<std::pair<int, int>> links;  // client fd, upstream fd
  auto close_all = [&] {
    for (auto [a, b] : links) {
      close(a);
      close(b);
    }
    links.clear();
  };
  char buffer[65536];
  while (true) {
    bool cut;
    {
      std::lock_guard<std::mutex> guard(shared_->mu);
      if (shared_->stop) break;
      cut = shared_->cut;
      if (shared_->cuts_done < shared_->cut_requests) {
        close_all();
        shared_->cuts_done = shared_->cut_requests;
        shared_->cv.notify_all();
      }
    }
    std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    for (auto [a, b] : links) {
      fds.push_back({a, POLLIN, 0});
      fds.push_back({b, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), 1000) <= 0) continue;
    if (fds[1].revents) {
      while (read(wake_pipe_[0], buffer, sizeof(buffer)) > 0) {
      }
    }
    std::vector<size_t> broken;
    for (size_t i = 0; i < links.size(); ++i) {
      for (int side = 0; side < 2; ++side) {
        const pollfd& p = fds[2 + 2 * i + side];
        if (!p.revents) continue;
        int from = side == 0 ? links[i].first : links[i].second;
        int to = side == 0 ? links[i].second : links[i].first;
        ssize_t n = read(from, buffer, sizeof(buffer));
        bool ok = n > 0;
        for (ssize_t off = 0; ok && off < n;) {
          ssize_t w = write(to, buffer + off, static_cast<size_t>(n - off));
          if (w <= 0) ok = false;
          off += std::max<ssize_t>(w, 0);
        }
        if (!ok) {
          broken.push_back(i);
          break;
        }
      }
    }
    for (auto it = broken.rbegin(); it != broken.rend(); ++it) {
      close(links[*it].first);
      close(links[*it].second);
      links.erase(links.begin() + static_cast<std::ptrdiff_t>(*it));
    }
    if (fds[0].revents) {
      int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      if (cut) {
        close(client);
        continue;
      }
      int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      if (connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(upstream);
        continue;
      }
      links.emplace_back(client, upstream);
    }
  }
  close_all();
}

}  // namespace kvstore::testing

#include "tests/tools/running_tool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "kvstore/etcd/etcd_backend.h"
#include "tests/support/eventually.h"
#include "tests/tools/tool_runner.h"

namespace kvstore::testing {

using namespace std::chrono_literals;

bool EventuallyTrue(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  return Eventually(condition, timeout);
}

RunningTool::RunningTool(const std::vector<std::string>& args) {
  std::vector<std::string> storage = {KVSTORECTL_PATH};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : storage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  if (pid_ < 0) {
    close(out[0]);
    close(err[0]);
    return;
  }
  readers_.emplace_back([this, fd = out[0]] { Read(fd, stdout_); });
  readers_.emplace_back([this, fd = err[0]] { Read(fd, stderr_); });
}

RunningTool::~RunningTool() {
  if (pid_ > 0 && !exit_code_) {
    kill(pid_, SIGKILL);
    Wait(kToolTimeout);
  }
  for (auto& reader : readers_) reader.join();
}

std::optional<std::string> RunningTool::AwaitLine(
    const std::function<bool(const std::string&)>& match, std::chrono::milliseconds timeout) {
  return Await(stdout_, match, timeout);
}

std::optional<std::string> RunningTool::AwaitLine(const std::string& exact,
                                                  std::chrono::milliseconds timeout) {
  return AwaitLine([&](const std::string& line) { return line == exact; }, timeout);
}

std::optional<std::string> RunningTool::AwaitStderr(
    const std::function<bool(const std::string&)>& match, std::chrono::milliseconds timeout) {
  return Await(stderr_, match, timeout);
}

size_t RunningTool::CountLines(const std::function<bool(const std::string&)>& match) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t count = 0;
  for (const auto& line : stdout_) count += match(line) ? 1 : 0;
  return count;
}

std::vector<std::string> RunningTool::StdoutLines() {
  std::lock_guard<std::mutex> lock(mu_);
  return stdout_;
}

void RunningTool::Signal(int signal) {
  if (pid_ > 0) kill(pid_, signal);
}

std::optional<int> RunningTool::Wait(std::chrono::milliseconds timeout) {
  if (exit_code_) return *exit_code_ >= 0 ? exit_code_ : std::nullopt;
  bool gone = false;  // waitpid failed: no child to wait for
  Eventually(
      [&] {
        int status = 0;
        const pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == pid_) exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        gone = r < 0;
        return exit_code_.has_value() || gone;
      },
      timeout);
  if (!exit_code_) return std::nullopt;
  return *exit_code_ >= 0 ? exit_code_ : std::nullopt;
}

std::string RunningTool::Transcript() {
  std::lock_guard<std::mutex> lock(mu_);
  std::string text = "--- stdout\n";
  for (const auto& line : stdout_) text += line + "\n";
  text += "--- stderr\n";
  for (const auto& line : stderr_) text += line + "\n";
  return text;
}

void RunningTool::Read(int fd, std::vector<std::string>& lines) {
  std::string partial;
  char buffer[4096];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    partial.append(buffer, static_cast<size_t>(n));
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t newline; (newline = partial.find('\n')) != std::string::npos;) {
      lines.push_back(partial.substr(0, newline));
      partial.erase(0, newline + 1);
    }
    cv_.notify_all();
  }
  close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  if (!partial.empty()) lines.push_back(partial);
  cv_.notify_all();
}

std::optional<std::string> RunningTool::Await(const std::vector<std::string>& lines,
                                              const std::function<bool(const std::string&)>& match,
                                              std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  size_t checked = 0;
  std::optional<std::string> found;
  cv_.wait_for(lock, timeout, [&] {
    for (; checked < lines.size(); ++checked) {
      if (match(lines[checked])) {
        found = lines[checked];
        return true;
      }
    }
    return false;
  });
  return found;
}

std::unique_ptr<EtcdCluster> StartEtcd() {
  auto cluster = EtcdCluster::Start();
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return cluster.ok() ? *std::move(cluster) : nullptr;
}

std::shared_ptr<Backend> Connect(const EtcdCluster& cluster) {
  auto backend = etcd::NewEtcdBackend(cluster.ClientConfig());
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? *backend : nullptr;
}

std::optional<std::string> GetValue(Backend& backend, const std::string& key) {
  auto value = backend.Get(Context::Background(), key);
  if (!value.ok()) {
    ADD_FAILURE() << "Get " << key << ": " << value.status();
    return std::nullopt;
  }
  return *value;
}

bool HasKey(Backend& backend, const std::string& key) { return GetValue(backend, key).has_value(); }

// The port from the stderr line "... metrics listening on 127.0.0.1:PORT".
std::optional<int> MetricsPort(RunningTool& tool) {
  static constexpr std::string_view kListening = "metrics listening on 127.0.0.1:";
  auto line = tool.AwaitStderr(
      [](const std::string& l) { return l.find(kListening) != std::string::npos; });
  if (!line) return std::nullopt;
  size_t at = line->find(kListening) + kListening.size();
  size_t end = line->find_first_not_of("0123456789", at);
  std::string digits = line->substr(at, end == std::string::npos ? end : end - at);
  if (digits.empty()) return std::nullopt;
  return std::stoi(digits);
}

// Scrapes /metrics with curl and parses the samples of the text exposition format
// (`name{labels} value` or `name value`); nullopt when curl fails.
std::optional<std::vector<Sample>> TryScrape(int port, std::chrono::seconds timeout) {
  CommandResult result = RunCommand({"curl", "-sS", "--max-time", std::to_string(timeout.count()),
                                     "http://127.0.0.1:" + std::to_string(port) + "/metrics"},
                                    timeout + std::chrono::seconds(5));
  if (result.exit_code != 0) return std::nullopt;
  std::vector<Sample> samples;
  for (const std::string& line : Lines(result.output)) {
    if (line.empty() || line[0] == '#') continue;
    size_t value_at = line.rfind(' ');
    if (value_at == std::string::npos) continue;
    Sample sample;
    std::string head = line.substr(0, value_at);
    if (size_t brace = head.find('{'); brace != std::string::npos && head.ends_with('}')) {
      sample.name = head.substr(0, brace);
      sample.labels = head.substr(brace + 1, head.size() - brace - 2);
    } else {
      sample.name = head;
    }
    try {
      sample.value = std::stod(line.substr(value_at + 1));
    } catch (const std::exception&) {
      continue;
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

std::vector<Sample> Scrape(int port) {
  std::optional<std::vector<Sample>> samples = TryScrape(port, std::chrono::seconds(10));
  EXPECT_TRUE(samples.has_value()) << "curl could not scrape 127.0.0.1:" << port << "/metrics";
  return samples.value_or(std::vector<Sample>{});
}

// The value of the first sample named `name` whose labels contain every one of `labels`.
std::optional<double> SampleValue(const std::vector<Sample>& samples, std::string_view name,
                                  const std::vector<std::string>& labels) {
  for (const Sample& sample : samples) {
    if (sample.name != name) continue;
    if (std::all_of(labels.begin(), labels.end(), [&](const std::string& label) {
          return sample.labels.find(label) != std::string::npos;
        })) {
      return sample.value;
    }
  }
  return std::nullopt;
}

}  // namespace kvstore::testing

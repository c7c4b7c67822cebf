// kvstorectl run as a separate process against real etcd members, for the end-to-end tests of
// its long-running commands: its stdout and stderr collected line by line, and helpers to read
// etcd and scrape the metrics it serves.
#ifndef KVSTORE_TESTS_TOOLS_RUNNING_TOOL_H_
#define KVSTORE_TESTS_TOOLS_RUNNING_TOOL_H_

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kvstore/backend.h"
#include "tests/support/etcd_fixture.h"

namespace kvstore::testing {

// Generous: only a broken tool (or a stuck etcd) ever waits this long.
inline constexpr std::chrono::seconds kToolTimeout{30};

// tests/support/eventually.h's Eventually, with the tools' longer default.
bool EventuallyTrue(const std::function<bool()>& condition,
                    std::chrono::milliseconds timeout = kToolTimeout);

// kvstorectl running in the background, its stdout and stderr collected line by line; killed
// (SIGKILL) by the destructor if still running.
class RunningTool {
 public:
  explicit RunningTool(const std::vector<std::string>& args);
  RunningTool(const RunningTool&) = delete;
  RunningTool& operator=(const RunningTool&) = delete;
  ~RunningTool();

  bool Started() const { return pid_ > 0; }

  // Waits for a stdout line matching `match`; returns it.
  std::optional<std::string> AwaitLine(const std::function<bool(const std::string&)>& match,
                                       std::chrono::milliseconds timeout = kToolTimeout);
  std::optional<std::string> AwaitLine(const std::string& exact,
                                       std::chrono::milliseconds timeout = kToolTimeout);
  std::optional<std::string> AwaitStderr(const std::function<bool(const std::string&)>& match,
                                         std::chrono::milliseconds timeout = kToolTimeout);
  size_t CountLines(const std::function<bool(const std::string&)>& match);
  // The stdout lines read so far.
  std::vector<std::string> StdoutLines();
  void Signal(int signal);
  // The exit code, or nullopt if it did not exit normally within `timeout`.
  std::optional<int> Wait(std::chrono::milliseconds timeout = kToolTimeout);
  // Everything printed so far, for failure messages.
  std::string Transcript();

 private:
  void Read(int fd, std::vector<std::string>& lines);
  std::optional<std::string> Await(const std::vector<std::string>& lines,
                                   const std::function<bool(const std::string&)>& match,
                                   std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::vector<std::thread> readers_;
  std::mutex mu_;  // guards stdout_ and stderr_
  std::condition_variable cv_;
  std::vector<std::string> stdout_, stderr_;
};

std::unique_ptr<EtcdCluster> StartEtcd();
std::shared_ptr<Backend> Connect(const EtcdCluster& cluster);
// The value at `key` (a failure is added when it cannot be read).
std::optional<std::string> GetValue(Backend& backend, const std::string& key);
bool HasKey(Backend& backend, const std::string& key);

// The port from the stderr line "... metrics listening on 127.0.0.1:PORT".
std::optional<int> MetricsPort(RunningTool& tool);

struct Sample {
  std::string name;
  std::string labels;  // the text between the braces
  double value = 0;
};

// Scrapes /metrics with curl and parses the samples of the text exposition format (a failure
// is added when curl fails).
std::vector<Sample> Scrape(int port);
// The same without a failure: nullopt when curl fails (a server that may be down).
std::optional<std::vector<Sample>> TryScrape(int port, std::chrono::seconds timeout);
// The value of the first sample named `name` whose labels contain every one of `labels`.
std::optional<double> SampleValue(const std::vector<Sample>& samples, std::string_view name,
                                  const std::vector<std::string>& labels);

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_TOOLS_RUNNING_TOOL_H_

// A herd of `kvstorectl agent` processes against one etcd that is killed (-9) and restarted
// (issue 23): every agent's view must come back to etcd's, and the unary requests etcd sees must
// stay within the agents' configured budget (etcd.qps each). `make test` runs a small herd;
// `make soak` runs KVSTORE_HERD_AGENTS (200 there). The peak rates etcd counted (its own
// grpc_server_* metrics, sampled every 250 ms) and the convergence time are printed as figures.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "kvstore/backend.h"
#include "tests/support/etcd_fixture.h"
#include "tests/tools/running_tool.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr char kPrefix[] = "cilium/state/herd/v1";
// Each agent's budget: requests per second once bootstrapped, and until then.
constexpr double kQps = 5;
constexpr double kBootstrapQps = 10;

int AgentsFromEnv() {
  int agents = 16;
  if (const char* text = std::getenv("KVSTORE_HERD_AGENTS")) {
    int parsed = 0;
    if (absl::SimpleAtoi(text, &parsed) && parsed > 0) agents = parsed;
  }
  return agents;
}

std::string AgentName(int i) { return "agent-" + std::to_string(i); }

// An agent's view of the prefix, from the lines it printed (`update NAME VALUE`, `delete NAME`).
std::map<std::string, std::string> ViewOf(RunningTool& agent) {
  std::map<std::string, std::string> view;
  for (const std::string& line : agent.StdoutLines()) {
    if (line.starts_with("update ")) {
      const size_t space = line.find(' ', 7);
      if (space == std::string::npos) continue;
      view[line.substr(7, space - 7)] = line.substr(space + 1);
    } else if (line.starts_with("delete ")) {
      view.erase(line.substr(7));
    }
  }
  return view;
}

// etcd's view of the prefix, names relative to it; nullopt while etcd does not answer.
std::optional<std::map<std::string, std::string>> EtcdView(Backend& backend) {
  auto [ctx, cancel] = WithTimeout(Context(), 5s);
  absl::StatusOr<KeyValuePairs> pairs = backend.ListPrefix(ctx, std::string(kPrefix) + "/");
  cancel();
  if (!pairs.ok()) return std::nullopt;
  std::map<std::string, std::string> view;
  for (const auto& [key, value] : *pairs) view[key.substr(sizeof(kPrefix))] = value.data;
  return view;
}

// What etcd counted so far: unary calls started, stream messages received.
struct EtcdCounters {
  double unary = 0;
  double stream_messages = 0;
};

std::optional<EtcdCounters> ScrapeEtcd(int port) {
  std::optional<std::vector<Sample>> samples = TryScrape(port, 2s);
  if (!samples) return std::nullopt;
  EtcdCounters counters;
  for (const Sample& sample : *samples) {
    if (sample.name == "grpc_server_started_total" &&
        sample.labels.find("grpc_type=\"unary\"") != std::string::npos) {
      counters.unary += sample.value;
    } else if (sample.name == "grpc_server_msg_received_total" &&
               sample.labels.find("grpc_type=\"bidi_stream\"") != std::string::npos) {
      counters.stream_messages += sample.value;
    }
  }
  return counters;
}

int PortOf(const std::string& endpoint) {
  int port = 0;
  const bool parsed = absl::SimpleAtoi(endpoint.substr(endpoint.rfind(':') + 1), &port);
  return parsed ? port : 0;
}

// Samples etcd's counters every 250 ms on its own thread; the peak rates over 1 s windows from
// a start time on.
class EtcdSampler {
 public:
  explicit EtcdSampler(int port) : port_(port), thread_([this] { Run(); }) {}
  ~EtcdSampler() {
    stop_ = true;
    thread_.join();
  }

  struct Peak {
    double unary_per_s = 0;
    double stream_messages_per_s = 0;
    double unary_total = 0;  // unary calls between `from` and the last sample
  };
  // etcd is being started again now: its counters start from zero.
  void MarkRestart(Clock::time_point at) {
    std::lock_guard<std::mutex> lock(mu_);
    samples_.push_back({at, EtcdCounters{}});
  }

  // Over the samples taken between `from` and `to`.
  Peak PeakBetween(Clock::time_point from, Clock::time_point to) {
    std::lock_guard<std::mutex> lock(mu_);
    Peak peak;
    std::optional<Reading> first, last;
    for (size_t i = 0; i < samples_.size(); ++i) {
      if (samples_[i].at < from || samples_[i].at > to) continue;
      if (!first) first = samples_[i];
      last = samples_[i];
      // The next sample at least 1 s later: a rate over one second.
      for (size_t j = i + 1; j < samples_.size() && samples_[j].at <= to; ++j) {
        const double seconds =
            std::chrono::duration<double>(samples_[j].at - samples_[i].at).count();
        if (seconds < 1.0) continue;
        // etcd restarted between them: its counters start from 0 again.
        if (samples_[j].counters.unary < samples_[i].counters.unary) break;
        peak.unary_per_s = std::max(
            peak.unary_per_s, (samples_[j].counters.unary - samples_[i].counters.unary) / seconds);
        peak.stream_messages_per_s =
            std::max(peak.stream_messages_per_s,
                     (samples_[j].counters.stream_messages - samples_[i].counters.stream_messages) /
                         seconds);
        break;
      }
    }
    if (first) peak.unary_total = last->counters.unary - first->counters.unary;
    return peak;
  }

 private:
  struct Reading {
    Clock::time_point at;
    EtcdCounters counters;
  };
  void Run() {
    while (!stop_) {
      const Clock::time_point at = Clock::now();
      if (std::optional<EtcdCounters> counters = ScrapeEtcd(port_)) {
        std::lock_guard<std::mutex> lock(mu_);
        samples_.push_back({at, *counters});
      }
      std::this_thread::sleep_until(at + 250ms);
    }
  }

  const int port_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Reading> samples_;  // guarded by mu_
  std::thread thread_;
};

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Waits until every agent's view equals etcd's (and etcd holds every agent's key); the seconds
// that took, or nullopt after `timeout`.
std::optional<double> AwaitConvergence(std::vector<std::unique_ptr<RunningTool>>& agents,
                                       Backend& client, Clock::time_point start,
                                       std::chrono::seconds timeout) {
  const bool converged = EventuallyTrue(
      [&] {
        std::optional<std::map<std::string, std::string>> expected = EtcdView(client);
        if (!expected || expected->size() < agents.size()) return false;
        for (auto& agent : agents) {
          if (ViewOf(*agent) != *expected) return false;
        }
        return true;
      },
      timeout);
  if (!converged) return std::nullopt;
  return SecondsSince(start);
}

TEST(AgentHerdTest, EveryAgentConvergesAfterEtcdIsKilledAndRestarted) {
  const int count = AgentsFromEnv();
  const std::chrono::seconds timeout(60 + count);
  absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<EtcdCluster> etcd = std::move(*started);
  const std::string config = etcd->dir() + "/herd.yaml";
  {
    std::ofstream out(config);
    out << "endpoints:\n- " << etcd->ClientEndpoint(0) << "\netcd.qps: " << kQps
        << "\netcd.bootstrapQps: " << kBootstrapQps << "\n";
  }
  std::shared_ptr<Backend> client = Connect(*etcd);
  ASSERT_NE(client, nullptr);
  EtcdSampler sampler(PortOf(etcd->ClientEndpoint(0)));
  const double budget = count * kQps;

  const Clock::time_point joining = Clock::now();
  std::vector<std::unique_ptr<RunningTool>> agents;
  for (int i = 0; i < count; ++i) {
    agents.push_back(std::make_unique<RunningTool>(std::vector<std::string>{
        "agent", "--etcd-config", config, "--name", AgentName(i), "--prefix", kPrefix, "--key",
        AgentName(i), "--value", "10.0.0." + std::to_string(i)}));
    ASSERT_TRUE(agents.back()->Started());
  }
  std::optional<double> joined = AwaitConvergence(agents, *client, joining, timeout);
  ASSERT_TRUE(joined) << "the agents did not converge after joining; first agent's transcript:\n"
                      << agents.front()->Transcript();
  // Steady state for a few seconds: the peak of the joining is measured up to the kill.
  std::this_thread::sleep_for(3s);
  const Clock::time_point killed = Clock::now();
  ASSERT_TRUE(etcd->KillMember(0).ok());
  std::this_thread::sleep_for(2s);  // down for a while, as when a person restarts it
  // From the moment etcd is started again: the agents reconnect while it is still getting
  // healthy, before StartMember returns.
  const Clock::time_point restarted = Clock::now();
  sampler.MarkRestart(restarted);
  ASSERT_TRUE(etcd->StartMember(0).ok());
  const double healthy_after = SecondsSince(restarted);
  // A change made right after the restart must reach every agent: their watches resumed. An
  // agent's key deleted from outside must be written again by its agent.
  ASSERT_TRUE(EventuallyTrue([&] {
    return client->Update(Context(), std::string(kPrefix) + "/marker", "after-restart", false).ok();
  }));
  ASSERT_TRUE(EventuallyTrue(
      [&] { return client->Delete(Context(), std::string(kPrefix) + "/" + AgentName(0)).ok(); }));
  std::optional<double> converged = AwaitConvergence(agents, *client, restarted, timeout);
  ASSERT_TRUE(converged) << "the agents did not converge after etcd's restart; first agent:\n"
                         << agents.front()->Transcript();
  EXPECT_TRUE(HasKey(*client, std::string(kPrefix) + "/" + AgentName(0)));
  // A few more seconds of steady state within the window, so that retries would show.
  std::this_thread::sleep_for(3s);
  const EtcdSampler::Peak join_peak = sampler.PeakBetween(joining, killed);
  std::cout << "[figure] herd of " << count << " agents joined and converged in " << *joined
            << " s; etcd's peak rate while joining: " << join_peak.unary_per_s
            << " unary requests/s (bootstrap budget " << count * kBootstrapQps << "/s), "
            << join_peak.stream_messages_per_s << " stream messages/s\n";

  const EtcdSampler::Peak peak = sampler.PeakBetween(restarted, Clock::now());
  const double window = SecondsSince(restarted);
  std::cout << "[figure] herd of " << count << " agents: every view equal to etcd's " << *converged
            << " s after etcd was started again (healthy after " << healthy_after
            << " s); etcd's peak rate after it: " << peak.unary_per_s
            << " unary requests/s (budget " << budget << "/s), " << peak.stream_messages_per_s
            << " stream messages/s; " << peak.unary_total << " unary requests in " << window
            << " s\n";
  // The budget holds over the window: each agent's bucket allows kQps a second plus a burst of
  // one (the rate in force is the bootstrap one until its watch has listed again, at most
  // kBootstrapQps), and the test's own client made a few calls.
  EXPECT_LE(peak.unary_total, count * (kBootstrapQps * window + 1) + 50);

  for (auto& agent : agents) agent->Signal(SIGTERM);
  for (auto& agent : agents) EXPECT_EQ(agent->Wait(), 0) << agent->Transcript();
}

}  // namespace
}  // namespace kvstore::testing

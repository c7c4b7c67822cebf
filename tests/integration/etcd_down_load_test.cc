// Load a client puts on itself (and on etcd) while etcd is down (issue 23, section 1): many
// collaborators in one process, each with its own backend, session lease and shared store; etcd
// stopped for a while. Every retry goes through the library's backoff (full jitter under a cap),
// so the process stays nearly idle while etcd is away, and everything converges once it is back.
// The CPU used while etcd was down is printed as a [figure] line and checked against issue 23's
// target of 1% of a core (measured: 0.3-0.4% with 50 collaborators on a loaded 2-core machine;
// 0.9-1.3% before unary calls waited for the connection instead of retrying into it). Sanitized
// or unoptimized builds run several times slower: there only a generous bound is checked, which a
// retry loop without backoff would still exceed.
//
// KVSTORE_DOWN_SECONDS (default 15; `make soak` uses 60) sets how long etcd stays down;
// KVSTORE_DOWN_COLLABORATORS (default 50) how many collaborators run.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"
#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

int EnvInt(const char* name, int fallback) {
  const char* text = std::getenv(name);
  return text == nullptr ? fallback : std::max(1, std::atoi(text));
}

// CPU time (user + system) this process used so far.
std::chrono::duration<double> ProcessCpu() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return std::chrono::duration<double>(seconds(usage.ru_utime) + seconds(usage.ru_stime));
}

constexpr char kPrefix[] = "cilium/state/down/v1";

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__OPTIMIZE__)
constexpr bool kSlowBuild = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
constexpr bool kSlowBuild = true;
#else
constexpr bool kSlowBuild = false;
#endif
#else
constexpr bool kSlowBuild = false;
#endif
// Percent of one core the client may use while etcd is down.
constexpr double kDownCpuBound = kSlowBuild ? 25.0 : 1.0;

TEST(EtcdDownLoadTest, ManyCollaboratorsIdleWhileEtcdIsDownAndConvergeAfter) {
  const int collaborators = EnvInt("KVSTORE_DOWN_COLLABORATORS", 50);
  const auto down_for = std::chrono::seconds(EnvInt("KVSTORE_DOWN_SECONDS", 15));
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  std::vector<std::shared_ptr<Backend>> backends;
  std::vector<std::unique_ptr<store::SharedStore>> stores;
  for (int i = 0; i < collaborators; ++i) {
    std::shared_ptr<Backend> backend = MustConnect((*cluster)->ClientConfig());
    ASSERT_NE(backend, nullptr);
    store::Configuration config;
    config.prefix = kPrefix;
    config.key_creator = store::KVPairCreator;
    config.backend = backend;
    config.synchronization_interval = 10s;
    absl::StatusOr<std::unique_ptr<store::SharedStore>> joined = store::SharedStore::Join(config);
    ASSERT_TRUE(joined.ok()) << joined.status();
    ASSERT_TRUE((*joined)
                    ->UpdateLocalKeySync(
                        Context(), store::KVPair(absl::StrCat("node", i), absl::StrCat("10.0.", i)))
                    .ok());
    backends.push_back(std::move(backend));
    stores.push_back(std::move(*joined));
  }
  auto everyone_sees_everyone = [&] {
    for (const auto& s : stores) {
      if (s->NumEntries() != collaborators) return false;
    }
    return true;
  };
  ASSERT_TRUE(Eventually(everyone_sees_everyone, 60s));

  // The same process with etcd up and nothing to do, for comparison.
  {
    const auto idle_cpu = ProcessCpu();
    const auto idle_wall = SteadyClock::now();
    std::this_thread::sleep_for(5s);
    const double idle = 100.0 * (ProcessCpu() - idle_cpu).count() /
                        std::chrono::duration<double>(SteadyClock::now() - idle_wall).count();
    std::cout << "[figure] client CPU with etcd up and idle, " << collaborators
              << " collaborators: " << idle << " % of one core\n";
  }

  ASSERT_TRUE((*cluster)->StopMember(0).ok());
  // Past the first retries, into the backoff's steady state: the figure is about being down.
  std::this_thread::sleep_for(2s);
  const auto cpu_before = ProcessCpu();
  const auto wall_before = SteadyClock::now();
  std::this_thread::sleep_for(down_for);
  const double cpu = (ProcessCpu() - cpu_before).count();
  const double wall = std::chrono::duration<double>(SteadyClock::now() - wall_before).count();
  const double percent = 100.0 * cpu / wall;
  std::cout << "[figure] client CPU while etcd was down, " << collaborators
            << " collaborators (backend + session lease + shared store each): " << percent
            << " % of one core (" << cpu << " s CPU in " << wall << " s)\n";
  RecordProperty("cpu_percent_while_down", std::to_string(percent));
  EXPECT_LT(percent, kDownCpuBound) << "retrying without backoff, or into a channel that cannot "
                                       "connect?";

  ASSERT_TRUE((*cluster)->StartMember(0).ok());
  const auto back = SteadyClock::now();
  // A key deleted from outside once etcd is back is written again by its owner: the watches
  // resumed, and the stores re-create their keys.
  std::shared_ptr<Backend> outside = MustConnect((*cluster)->ClientConfig());
  ASSERT_TRUE(
      Retry([&] { return outside->Delete(Context(), std::string(kPrefix) + "/node0"); }).ok());
  auto converged = [&] {
    if (!everyone_sees_everyone()) return false;
    absl::StatusOr<KeyValuePairs> listed = outside->ListPrefix(Context(), kPrefix);
    return listed.ok() && listed->size() == static_cast<size_t>(collaborators);
  };
  EXPECT_TRUE(Eventually(converged, 120s));
  std::cout
      << "[figure] converged "
      << std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - back).count()
      << " ms after etcd came back\n";
  for (auto& s : stores) s->Release();
  stores.clear();
  for (auto& b : backends) b->Close();
}

// max_inflight of one: asynchronous writes queue for the one slot, blocking ones wait for it, a
// leased write grants its lease in between; everything completes, nothing deadlocks.
TEST(EtcdDownLoadTest, MaxInflightOfOneCompletesEverything) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  etcd::EtcdConfig config = (*cluster)->ClientConfig();
  config.max_inflight = 1;
  std::shared_ptr<Backend> backend = MustConnect(config);
  ASSERT_NE(backend, nullptr);
  Context ctx;
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx, "inflight/", 1024);
  constexpr int kAsync = 200, kThreads = 4, kBlockingEach = 10;
  std::atomic<int> async_ok{0}, async_done{0};
  for (int i = 0; i < kAsync; ++i) {
    backend->UpdateAsync(ctx, absl::StrCat("inflight/a", i), "v", /*lease=*/i % 2 == 0,
                         [&](absl::Status status) {
                           if (status.ok()) ++async_ok;
                           ++async_done;
                         });
  }
  std::atomic<int> blocking_ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBlockingEach; ++i) {
        if (backend->Update(ctx, absl::StrCat("inflight/b", t, "-", i), "v", i % 2 == 0).ok()) {
          ++blocking_ok;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_TRUE(Eventually([&] { return async_done.load() == kAsync; }, 60s));
  EXPECT_EQ(async_ok.load(), kAsync);
  EXPECT_EQ(blocking_ok.load(), kThreads * kBlockingEach);
  WatchView view;
  EXPECT_TRUE(view.ReadUntil(*watcher, [&](const WatchView& v) {
    return v.keys.size() == static_cast<size_t>(kAsync + kThreads * kBlockingEach);
  }));
  watcher->Stop();
}

}  // namespace
}  // namespace kvstore::testing

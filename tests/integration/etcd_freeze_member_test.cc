// One member of a 3-member cluster frozen with SIGSTOP (issue 23, section 4): its connections
// stay open and silent, so nothing but the client's own checks (gRPC keepalive pings, the watch
// stream's progress requests, the hasleader metadata on streams) notices. The watch and the
// session lease keep working through the other members. Each member is frozen in turn, so that
// whichever member the streams were on gets frozen once. The time until the watch delivers again
// is printed as a [figure] line.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;

TEST(EtcdFreezeMemberTest, WatchAndLeaseSurviveAFrozenMember) {
  EtcdClusterOptions options;
  options.members = 3;
  absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  EtcdCluster& cluster = **started;
  etcd::EtcdConfig config = cluster.ClientConfig();
  config.lease_ttl = 5s;
  std::shared_ptr<Backend> backend = MustConnect(config);
  ASSERT_NE(backend, nullptr);
  Context ctx;
  ASSERT_TRUE(backend->Update(ctx, "freeze/own", "1", /*lease=*/true).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx, "freeze/", 64);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));

  for (int frozen = 0; frozen < cluster.size(); ++frozen) {
    // A writer that talks only to the members that are not frozen.
    etcd::EtcdConfig others = cluster.ClientConfig();
    others.endpoints.clear();
    for (int m = 0; m < cluster.size(); ++m) {
      if (m != frozen) others.endpoints.push_back(cluster.ClientEndpoint(m));
    }
    std::shared_ptr<Backend> writer = MustConnect(others);
    ASSERT_NE(writer, nullptr);
    ASSERT_TRUE(cluster.PauseMember(frozen).ok());
    const auto paused = std::chrono::steady_clock::now();
    const std::string key = absl::StrCat("freeze/k", frozen);
    ASSERT_TRUE(Retry([&] { return writer->Update(ctx, key, "v", false); }).ok());
    const bool seen = view.ReadUntil(
        *watcher, [&](const WatchView& v) { return v.keys.count(key) == 1; }, 60s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - paused);
    std::cout << "[figure] member " << frozen << " frozen: watch delivered a write after "
              << took.count() << " ms\n";
    EXPECT_TRUE(seen) << "member " << frozen << " frozen: the watch went silent";
    // The backend's own writes and its session lease go on: past twice the lease TTL, its key
    // is still there.
    ASSERT_TRUE(Retry([&] { return backend->Update(ctx, "freeze/own", key, true); }).ok());
    const auto until = std::chrono::steady_clock::now() + 2 * config.lease_ttl;
    while (std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(500ms);
      absl::StatusOr<std::optional<std::string>> own = writer->Get(ctx, "freeze/own");
      if (own.ok()) {
        ASSERT_TRUE(own->has_value()) << "member " << frozen << " frozen: the lease expired";
      }
    }
    ASSERT_TRUE(cluster.ResumeMember(frozen).ok());
    ASSERT_TRUE(cluster.WaitHealthy(frozen, 30s).ok());
    writer->Close();
  }
  watcher->Stop();
}

}  // namespace
}  // namespace kvstore::testing

// Closing and destroying with etcd unreachable (issue 23, section 3): a backend, a store and a
// mesh stop without waiting for a server that is gone, and never block forever. These tests
// check that each returns (a hang fails them by the ctest timeout) and that what was waiting on
// them returns too; how long it took is printed as a [figure] line, not asserted (no timing
// thresholds in tests).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kvstore/mesh/mesh.h"
#include "kvstore/store/key.h"
#include "kvstore/store/shared_store.h"
#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

double MillisSince(SteadyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

void Figure(const std::string& what, double ms) {
  std::cout << "[figure] " << what << ": " << ms << " ms\n";
}

// A loopback address where nobody listens (a port that was free a moment ago).
std::string Nowhere() { return "127.0.0.1:" + std::to_string(FreeLoopbackPorts(1)[0]); }

// Busy with a watcher, a leased write and a blocking call while etcd is gone: Close and the
// destructor return, and so does the blocking call.
TEST(LifecycleTest, BackendClosesWithEtcdGone) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  etcd::EtcdConfig config = (*cluster)->ClientConfig();
  std::shared_ptr<Backend> backend = MustConnect(config);
  ASSERT_NE(backend, nullptr);
  Context ctx;
  ASSERT_TRUE(backend->Update(ctx, "life/own", "1", /*lease=*/true).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx, "life/", 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  ASSERT_TRUE((*cluster)->KillMember(0).ok());

  std::atomic<bool> get_returned{false};
  std::thread blocked([&] {
    (void)backend->Get(ctx, "life/own");
    get_returned = true;
  });
  std::atomic<bool> async_done{false};
  backend->UpdateAsync(ctx, "life/async", "2", /*lease=*/true,
                       [&](absl::Status) { async_done = true; });
  std::this_thread::sleep_for(300ms);  // let the calls reach their retries: not a synchronisation

  auto start = SteadyClock::now();
  backend->Close();
  Figure("backend Close with etcd gone", MillisSince(start));
  EXPECT_TRUE(Eventually([&] { return get_returned.load(); }, 20s));
  blocked.join();
  EXPECT_TRUE(async_done);
  EXPECT_FALSE(watcher->Next().has_value());  // closed
  start = SteadyClock::now();
  backend.reset();
  Figure("backend destroyed after Close", MillisSince(start));
}

// Never reachable, destroyed without Close.
TEST(LifecycleTest, BackendDestroyedWithEtcdNeverReached) {
  etcd::EtcdConfig config;
  config.endpoints = {Nowhere()};
  config.dial_timeout = 2s;
  config.request_timeout = 5s;
  std::shared_ptr<Backend> backend = MustConnect(config);
  ASSERT_NE(backend, nullptr);
  Context ctx;
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx, "life/", 16);
  std::atomic<int> done{0};
  for (int i = 0; i < 10; ++i) {
    backend->UpdateAsync(ctx, "life/k" + std::to_string(i), "v", /*lease=*/true,
                         [&](absl::Status) { ++done; });
  }
  std::this_thread::sleep_for(300ms);  // let the calls reach their retries: not a synchronisation
  const auto start = SteadyClock::now();
  backend.reset();
  Figure("backend destroyed without Close, etcd never reached", MillisSince(start));
  EXPECT_EQ(done.load(), 10);
  watcher->Stop();
}

// Calls waiting for a connection that never comes end with their context, long before their
// deadline: a blocking read, an asynchronous write and a blocking write, two members to go
// round and two slots of max_inflight for three calls (one of them waits for a slot).
TEST(LifecycleTest, CallsWaitingForAConnectionEndWithTheirContext) {
  etcd::EtcdConfig config;
  config.endpoints = {Nowhere(), Nowhere()};
  config.dial_timeout = 2s;
  config.request_timeout = 600s;
  config.max_inflight = 2;
  std::shared_ptr<Backend> backend = MustConnect(config);
  ASSERT_NE(backend, nullptr);
  auto [ctx, cancel] = WithCancel(Context::Background());
  std::atomic<bool> async_done{false};
  absl::Status async_status;
  backend->UpdateAsync(ctx, "life/async", "v", /*lease=*/false, [&](absl::Status status) {
    async_status = status;
    async_done = true;
  });
  std::atomic<int> blocking_done{0};
  absl::Status get_status, update_status;
  std::thread getter([&] {
    get_status = backend->Get(ctx, "life/get").status();
    ++blocking_done;
  });
  std::thread updater([&] {
    update_status = backend->Update(ctx, "life/update", "v", /*lease=*/false);
    ++blocking_done;
  });
  std::this_thread::sleep_for(300ms);  // let the calls reach their retries: not a synchronisation
  EXPECT_FALSE(async_done);
  EXPECT_EQ(blocking_done.load(), 0);
  const auto start = SteadyClock::now();
  cancel();
  EXPECT_TRUE(Eventually([&] { return async_done.load() && blocking_done.load() == 2; }, 60s));
  Figure("three calls waiting for a connection, after their context ended", MillisSince(start));
  getter.join();
  updater.join();
  EXPECT_EQ(async_status.code(), absl::StatusCode::kCancelled) << async_status;
  EXPECT_EQ(get_status.code(), absl::StatusCode::kCancelled) << get_status;
  EXPECT_EQ(update_status.code(), absl::StatusCode::kCancelled) << update_status;
  backend->Close();
}

// A store joined while etcd was there, destroyed (Release) and closed with it gone.
TEST(LifecycleTest, StoreStopsWithEtcdGone) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  std::shared_ptr<Backend> backend = MustConnect((*cluster)->ClientConfig());
  ASSERT_NE(backend, nullptr);
  auto join = [&](const std::string& prefix) {
    store::Configuration config;
    config.prefix = prefix;
    config.key_creator = store::KVPairCreator;
    config.backend = backend;
    absl::StatusOr<std::unique_ptr<store::SharedStore>> joined = store::SharedStore::Join(config);
    EXPECT_TRUE(joined.ok()) << joined.status();
    return joined.ok() ? std::move(*joined) : nullptr;
  };
  std::unique_ptr<store::SharedStore> released = join("life/a");
  std::unique_ptr<store::SharedStore> closed = join("life/b");
  ASSERT_NE(released, nullptr);
  ASSERT_NE(closed, nullptr);
  ASSERT_TRUE(released->UpdateLocalKeySync(Context(), store::KVPair("k", "1")).ok());
  ASSERT_TRUE(closed->UpdateLocalKeySync(Context(), store::KVPair("k", "1")).ok());
  ASSERT_TRUE((*cluster)->KillMember(0).ok());

  auto start = SteadyClock::now();
  released.reset();
  Figure("store destroyed with etcd gone", MillisSince(start));
  // Close deletes the local keys: bounded by its context, whatever etcd does.
  auto [ctx, cancel] = WithTimeout(Context::Background(), 100ms);
  start = SteadyClock::now();
  closed->Close(ctx);
  Figure("store Close(100 ms context) with etcd gone", MillisSince(start));
  cancel();
  start = SteadyClock::now();
  closed.reset();
  backend->Close();
  Figure("store destroyed and backend closed after Close", MillisSince(start));
}

// A mesh whose remote and target are both unreachable stops when its context is cancelled.
TEST(LifecycleTest, MeshStopsWithEtcdUnreachable) {
  etcd::EtcdConfig config;
  config.endpoints = {Nowhere()};
  config.dial_timeout = 2s;
  config.request_timeout = 5s;
  std::shared_ptr<Backend> target = MustConnect(config);
  std::shared_ptr<Backend> remote = MustConnect(config);
  ASSERT_NE(target, nullptr);
  ASSERT_NE(remote, nullptr);
  mesh::MeshOptions options;
  options.target = target;
  options.heartbeat_interval = 1s;
  absl::StatusOr<std::unique_ptr<mesh::Mesh>> made = mesh::Mesh::New(options);
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<mesh::Mesh> mesh = std::move(*made);
  mesh::RemoteCluster cluster;
  cluster.name = "c1";
  cluster.backend = remote;
  ASSERT_TRUE(mesh->AddCluster(cluster).ok());
  auto [ctx, cancel] = WithCancel(Context::Background());
  std::atomic<bool> returned{false};
  SteadyClock::time_point returned_at;
  std::thread runner([&, ctx = ctx] {
    mesh->Run(ctx);
    returned_at = SteadyClock::now();
    returned = true;
  });
  std::this_thread::sleep_for(1500ms);  // let it try to connect: not a synchronisation
  const auto start = SteadyClock::now();
  cancel();
  EXPECT_TRUE(Eventually([&] { return returned.load(); }, 20s));
  runner.join();
  Figure("mesh Run returned after cancel, etcd unreachable",
         std::chrono::duration<double, std::milli>(returned_at - start).count());
  auto destroyed = SteadyClock::now();
  mesh.reset();
  target->Close();
  remote->Close();
  Figure("mesh destroyed and backends closed", MillisSince(destroyed));
}

}  // namespace
}  // namespace kvstore::testing

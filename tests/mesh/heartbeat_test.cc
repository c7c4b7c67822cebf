#include "kvstore/mesh/heartbeat.h"

#include <gtest/gtest.h>

#include <thread>

#include "kvstore/memory/in_memory_store.h"
#include "kvstore/paths.h"
#include "tests/support/eventually.h"

namespace kvstore::mesh {
namespace {

using namespace std::chrono_literals;

TEST(HeartbeatTest, FormatsRfc3339InUtc) {
  // 2026-12-03T08:40:05Z
  std::chrono::system_clock::time_point t{std::chrono::seconds(1796287205)};
  EXPECT_EQ(FormatHeartbeat(t + 250ms), "2026-12-03T08:40:05Z");
}

// Waits (real time, bounded) until `fn` holds, moving `clock` on between looks.
template <typename Fn>
bool AdvanceUntil(FakeClock& clock, Fn fn, Clock::duration step) {
  return kvstore::testing::Eventually([&] {
    if (fn()) return true;
    clock.Advance(step);
    return false;
  });
}

TEST(HeartbeatTest, WritesAtOnceAndEveryInterval) {
  auto clock = std::make_shared<FakeClock>();
  auto store = memory::InMemoryStore::Create();
  std::shared_ptr<Backend> client = store->NewClient();
  auto [ctx, cancel] = WithCancel(Context());
  std::thread writer([&, ctx = ctx] { RunHeartbeat(ctx, *client, 60s, true, clock); });
  auto revision = [&] {
    auto got = client->ListPrefix(Context(), kHeartbeatPath);
    return got.ok() && got->contains(std::string(kHeartbeatPath))
               ? got->at(std::string(kHeartbeatPath)).mod_revision
               : 0;
  };
  ASSERT_TRUE(AdvanceUntil(
      *clock, [&] { return revision() > 0; }, 0s));
  const int64_t first = revision();
  EXPECT_NE(client->ListPrefix(Context(), kHeartbeatPath)->begin()->second.lease_id, 0);
  // Not again before the interval; again after it.
  ASSERT_TRUE(AdvanceUntil(
      *clock, [&] { return clock->NumWaiters() > 0; }, 0s));
  clock->Advance(59s);
  EXPECT_EQ(revision(), first);
  ASSERT_TRUE(AdvanceUntil(
      *clock, [&] { return revision() > first; }, 1s));
  cancel();
  writer.join();
}

TEST(HeartbeatTest, MonitorTellsAStaleHeartbeat) {
  auto clock = std::make_shared<FakeClock>();
  auto store = memory::InMemoryStore::Create();
  std::shared_ptr<Backend> client = store->NewClient();
  HeartbeatMonitor monitor(120s, clock);
  EXPECT_TRUE(monitor.Stale());  // not watching yet
  auto [ctx, cancel] = WithCancel(Context());
  std::thread watcher([&, ctx = ctx] { monitor.Run(ctx, *client); });
  ASSERT_TRUE(AdvanceUntil(
      *clock, [&] { return !monitor.Stale(); }, 0s));
  EXPECT_FALSE(monitor.LastSeen().has_value());
  // Never beating: stale once the period passed since the start.
  clock->Advance(121s);
  EXPECT_FALSE(monitor.Check().ok());
  ASSERT_TRUE(client->Update(Context(), kHeartbeatPath, "t1", false).ok());
  ASSERT_TRUE(AdvanceUntil(
      *clock, [&] { return !monitor.Stale(); }, 0s));
  EXPECT_EQ(monitor.LastSeen(), clock->Now());
  clock->Advance(120s);
  EXPECT_FALSE(monitor.Stale());
  clock->Advance(1s);
  EXPECT_EQ(monitor.Check().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(client->Update(Context(), kHeartbeatPath, "t2", false).ok());
  ASSERT_TRUE(AdvanceUntil(
      *clock, [&] { return !monitor.Stale(); }, 0s));
  cancel();
  watcher.join();
}

}  // namespace
}  // namespace kvstore::mesh

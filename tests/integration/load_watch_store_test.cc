// Load: one RestartableWatchStore holding 200,000 keys listed from etcd, then following a round
// of updates. Memory must stay bounded; the resident bytes per key are printed for the report.
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/store/watch_store.h"
#include "tests/support/etcd_fixture.h"
#include "tests/support/store_checks.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;

constexpr char kPrefix[] = "cilium/state/bigwatch/v1";
constexpr int kKeys = 200000;
constexpr int kWriters = 8;
constexpr size_t kValueBytes = 64;

std::string Name(int i) { return absl::StrFormat("node-%07d", i); }
std::string ValueOf(int i, char fill) {
  std::string value = absl::StrFormat("%07d:", i);
  value.resize(kValueBytes, fill);
  return value;
}

// Counts what the store reports and keeps nothing: the memory measured is the store's.
class CountingObserver : public store::Observer {
 public:
  void OnUpdate(const store::Key&) override { ++updates; }
  void OnDelete(const store::NamedKey&) override { ++deletes; }
  std::atomic<uint64_t> updates{0}, deletes{0};
};

int64_t TrimmedRss() {
  malloc_trim(0);
  return ResidentBytes();
}

// Writes keys [0, kKeys) with `fill` values through kWriters clients at once.
void WriteAll(const etcd::EtcdConfig& config, char fill) {
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&config, w, fill] {
      absl::StatusOr<std::shared_ptr<Backend>> backend = etcd::NewEtcdBackend(config);
      ASSERT_TRUE(backend.ok()) << backend.status();
      for (int i = w; i < kKeys; i += kWriters) {
        absl::Status status = (*backend)->Update(Context(), std::string(kPrefix) + "/" + Name(i),
                                                 ValueOf(i, fill), /*lease=*/false);
        ASSERT_TRUE(status.ok()) << status;
      }
      (*backend)->Close();
    });
  }
  for (std::thread& t : writers) t.join();
}

TEST(LoadWatchStoreTest, TwoHundredThousandKeysInOneWatchStore) {
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  etcd::EtcdConfig config = (*cluster)->ClientConfig();
  config.request_timeout = 30s;

  auto start = std::chrono::steady_clock::now();
  WriteAll(config, 'a');
  std::printf("[ figures  ] %d keys written in %.1f s\n", kKeys,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());

  absl::StatusOr<std::shared_ptr<Backend>> backend = etcd::NewEtcdBackend(config);
  ASSERT_TRUE(backend.ok()) << backend.status();
  auto observer = std::make_shared<CountingObserver>();
  std::unique_ptr<store::WatchStore> watch_store =
      store::NewRestartableWatchStore("load", store::KVPairCreator, observer);
  const int64_t before = TrimmedRss();
  auto [ctx, cancel] = WithCancel(Context::Background());
  start = std::chrono::steady_clock::now();
  std::thread watching([&, ctx = ctx] { watch_store->Watch(ctx, **backend, kPrefix); });
  ASSERT_EQ(PollUntil(
                [&]() -> std::string {
                  return watch_store->Synced() && watch_store->NumEntries() == kKeys
                             ? ""
                             : absl::StrFormat("%d entries", watch_store->NumEntries());
                },
                120s),
            "");
  const double list_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t listed = TrimmedRss();

  // Every key changes once: the store replaces values, it does not accumulate them.
  WriteAll(config, 'b');
  ASSERT_EQ(PollUntil(
                [&]() -> std::string {
                  return observer->updates == 2u * kKeys
                             ? ""
                             : absl::StrFormat("%d updates", observer->updates.load());
                },
                120s),
            "");
  const int64_t updated = TrimmedRss();
  EXPECT_EQ(watch_store->NumEntries(), static_cast<uint64_t>(kKeys));
  EXPECT_EQ(observer->deletes, 0u);

  const double per_key = static_cast<double>(listed - before) / kKeys;
  const size_t payload = std::string(kPrefix).size() + 1 + Name(0).size() + kValueBytes;
  std::printf(
      "[ figures  ] listed %d keys in %.1f s; RSS %.1f -> %.1f MiB (%.0f bytes per key "
      "for %zu bytes of key and value); after updating every key %.1f MiB; %d threads\n",
      kKeys, list_seconds, static_cast<double>(before) / (1 << 20),
      static_cast<double>(listed) / (1 << 20), per_key, payload,
      static_cast<double>(updated) / (1 << 20), ThreadCount());
  // Bounded: well under 2 KiB a key, and a full round of updates does not double it.
  EXPECT_LT(per_key, 2048.0);
  EXPECT_LT(updated - before, 2 * (listed - before) + (32 << 20));

  cancel();
  watching.join();
  (*backend)->Close();
}

}  // namespace
}  // namespace kvstore::testing

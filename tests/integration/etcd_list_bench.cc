// Measures ListPrefix over 100,000 keys of 256 bytes against a real etcd with several page sizes
// (Cilium's 256, the library default, one unpaginated range). Not run by ctest:
//   build/tests/integration/etcd_list_bench [keys] [rounds]
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "kvstore/etcd/etcd_backend.h"
#include "tests/support/etcd_fixture.h"

namespace {

using kvstore::Context;

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int keys = argc > 1 ? std::atoi(argv[1]) : 100000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  auto cluster =
      kvstore::testing::EtcdCluster::Start({.members = 1,
                                            .tls = nullptr,
                                            .member_hosts = {},
                                            .extra_args = {"--quota-backend-bytes=4294967296"}});
  if (!cluster.ok()) {
    std::fprintf(stderr, "%s\n", cluster.status().ToString().c_str());
    return 1;
  }
  kvstore::etcd::EtcdConfig config = (*cluster)->ClientConfig();
  config.request_timeout = std::chrono::seconds(60);
  auto writer = kvstore::etcd::NewEtcdBackend(config);
  if (!writer.ok()) return 1;

  const std::string value(256, 'v');
  auto fill_start = std::chrono::steady_clock::now();
  std::atomic<int> next{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < keys; i = next++) {
        char key[64];
        std::snprintf(key, sizeof(key), "bench/list/%08d", i);
        if (!(*writer)->Update(Context(), key, value, false).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  std::printf("filled %d keys of %zu B in %.1f s (%d failures)\n", keys, value.size(),
              Seconds(std::chrono::steady_clock::now() - fill_start), failures.load());

  struct Variant {
    const char* name;
    size_t page_size;
  } variants[] = {
      {"page 256 (Cilium)", 256}, {"page 1000", 1000},
      {"page 5000", 5000},        {"default (10000, 4 MiB)", 0},
      {"page 20000", 20000},      {"unpaginated", std::numeric_limits<size_t>::max()},
  };
  for (const Variant& v : variants) {
    kvstore::etcd::EtcdConfig c = config;
    c.list_page_size = v.page_size;
    auto backend = kvstore::etcd::NewEtcdBackend(c);
    if (!backend.ok()) return 1;
    (void)(*backend)->Get(Context(), "warm-up");
    std::vector<double> times;
    size_t listed = 0;
    for (int r = 0; r < rounds; ++r) {
      auto start = std::chrono::steady_clock::now();
      auto list = (*backend)->ListPrefix(Context(), "bench/list/");
      times.push_back(Seconds(std::chrono::steady_clock::now() - start));
      if (!list.ok()) {
        std::fprintf(stderr, "%s: %s\n", v.name, list.status().ToString().c_str());
        return 1;
      }
      listed = list->size();
    }
    std::sort(times.begin(), times.end());
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf("%-22s %zu keys: median %.3f s, min %.3f s, max %.3f s (peak RSS so far %ld MiB)\n",
                v.name, listed, times[times.size() / 2], times.front(), times.back(),
                usage.ru_maxrss / 1024);
    (*backend)->Close();
  }
  (*writer)->Close();
  return 0;
}

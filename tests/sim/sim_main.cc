// kvstore_sim: runs the deterministic simulation (sim.h) for one seed or a range of seeds.
//   kvstore_sim --seed=S [--trace]        replays one seed: its options, faults and `seed=S hash=H`
//   kvstore_sim --from=A --count=N [--stride=K]
//                                         seeds A, A+K, ... (N of them); a line per failure, then
//                                         a summary line (scripts/sim.sh adds the summaries up)
//   kvstore_sim --planted=BUG --count=N   (a -DKVSTORE_SIM_PLANTED_BUGS=ON build) runs seeds 1..N
//                                         with BUG planted until one fails: `caught BUG after N
//                                         seeds` or `missed BUG`
//   kvstore_sim --replay-twice --from=A --count=N
//                                         runs each seed twice and fails when the hashes differ
// Exit status: 1 when a seed failed (or a planted bug was missed, or a replay differed).
#include <dirent.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

#include "core/planted_bugs.h"
#include "sim/sim.h"
#include "spdlog/spdlog.h"

#ifndef KVSTORE_SIM_COMMIT
#define KVSTORE_SIM_COMMIT "unknown"
#endif

namespace {

#ifdef KVSTORE_PLANTED_BUGS
using kvstore::internal::PlantedBug;

const std::map<std::string, PlantedBug>& Bugs() {
  static const std::map<std::string, PlantedBug> bugs = {
      {"skip_relist_diff", PlantedBug::kSkipRelistDiff},
      {"canary_before_drain", PlantedBug::kCanaryBeforeDrain},
      {"drop_last_event", PlantedBug::kDropLastEvent},
      {"reuse_expired_lease", PlantedBug::kReuseExpiredLease},
      {"resume_wrong_revision", PlantedBug::kResumeWrongRevision},
      {"resume_behind", PlantedBug::kResumeBehind},
      {"no_stale_delete", PlantedBug::kNoStaleDelete},
      {"lost_lease_not_requeued", PlantedBug::kLostLeaseNotRequeued},
  };
  return bugs;
}
#endif

bool Flag(std::string_view arg, std::string_view name, std::string* value) {
  if (!arg.starts_with(name)) return false;
  arg.remove_prefix(name.size());
  if (arg.empty()) {
    value->clear();
    return true;
  }
  if (arg.front() != '=') return false;
  *value = std::string(arg.substr(1));
  return true;
}

bool ParseU64(const std::string& s, uint64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtoull(s.c_str(), &end, 0);
  return end != nullptr && *end == '\0';
}

void PrintFaults(const std::map<std::string, uint64_t>& faults) {
  std::printf("faults:");
  for (const auto& [name, count] : faults) std::printf(" %s=%" PRIu64, name.c_str(), count);
  std::printf("\n");
}

// Threads of this process: the simulation must never start one (no executor pool, no timer
// thread, no blocking pool), or its runs would not be deterministic.
int Threads() {
  int n = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++n;
    }
    closedir(dir);
  }
  return n;
}

int Usage() {
  std::fprintf(stderr,
               "usage: kvstore_sim --seed=S [--trace] | --from=A --count=N [--stride=K] "
               "[--replay-twice] | --planted=BUG --count=N [--length=X] [--commit=C]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::off);
  uint64_t seed = 0, from = 1, count = 0, stride = 1;
  bool one = false, trace = false, twice = false;
  std::string planted, commit = KVSTORE_SIM_COMMIT;
  kvstore::sim::SimConfig config;
  for (int i = 1; i < argc; ++i) {
    std::string value;
    std::string_view arg = argv[i];
    if (Flag(arg, "--seed", &value)) {
      if (!ParseU64(value, &seed)) return Usage();
      one = true;
    } else if (Flag(arg, "--from", &value)) {
      if (!ParseU64(value, &from)) return Usage();
    } else if (Flag(arg, "--count", &value)) {
      if (!ParseU64(value, &count)) return Usage();
    } else if (Flag(arg, "--stride", &value)) {
      if (!ParseU64(value, &stride) || stride == 0) return Usage();
    } else if (Flag(arg, "--length", &value)) {
      config.length = std::atof(value.c_str());
      if (config.length <= 0) return Usage();
    } else if (Flag(arg, "--planted", &value)) {
      planted = value;
    } else if (Flag(arg, "--commit", &value)) {
      commit = value;
    } else if (arg == "--trace") {
      trace = true;
    } else if (arg == "--replay-twice") {
      twice = true;
    } else {
      return Usage();
    }
  }

  if (one) {
    config.trace = trace;
    kvstore::sim::SimResult r = kvstore::sim::RunSeed(seed, config);
    std::printf("commit=%s seed=%" PRIu64 " options: %s\n", commit.c_str(), seed,
                r.options.c_str());
    PrintFaults(r.faults);
    std::printf("steps=%" PRIu64 " tasks=%" PRIu64 " simulated_s=%.1f heals=%" PRIu64
                " convergence_max_s=%.1f\n",
                r.steps, r.tasks_run, r.simulated_seconds, r.heals, r.convergence_seconds);
    if (!r.violation.empty()) std::printf("FAIL seed=%" PRIu64 " %s\n", seed, r.violation.c_str());
    const int threads = Threads();
    if (threads != 1) std::printf("FAIL seed=%" PRIu64 " %d threads ran, not 1\n", seed, threads);
    std::printf("seed=%" PRIu64 " hash=%016" PRIx64 "\n", seed, r.hash);
    return r.violation.empty() && threads == 1 ? 0 : 1;
  }
  if (count == 0) return Usage();

  if (!planted.empty()) {
#ifdef KVSTORE_PLANTED_BUGS
    auto it = Bugs().find(planted);
    if (it == Bugs().end()) {
      std::fprintf(stderr, "unknown planted bug %s; known:", planted.c_str());
      for (const auto& [name, bug] : Bugs()) std::fprintf(stderr, " %s", name.c_str());
      std::fprintf(stderr, "\n");
      return 2;
    }
    kvstore::internal::ActivePlantedBug() = it->second;
    // Runs until the first catch, and on to 200 seeds for the share of seeds that catch it.
    uint64_t first = 0, caught = 0, ran = 0;
    std::string first_violation;
    for (uint64_t n = 1; n <= count && (first == 0 || n <= 200); ++n) {
      kvstore::sim::SimResult r = kvstore::sim::RunSeed(n, config);
      ++ran;
      if (r.violation.empty()) continue;
      ++caught;
      if (first == 0) {
        first = n;
        first_violation = r.violation;
      }
    }
    if (first == 0) {
      std::printf("missed %s\n", planted.c_str());
      return 1;
    }
    std::printf("caught %s after %" PRIu64 " seeds (caught by %" PRIu64 " of %" PRIu64
                " seeds; seed=%" PRIu64 ": %s)\n",
                planted.c_str(), first, caught, ran, first, first_violation.c_str());
    return 0;
#else
    std::fprintf(stderr, "--planted needs a build with -DKVSTORE_SIM_PLANTED_BUGS=ON\n");
    return 2;
#endif
  }
  std::printf("commit=%s seeds %" PRIu64 "..(stride %" PRIu64 ", %" PRIu64 " seeds)\n",
              commit.c_str(), from, stride, count);
  const auto start = std::chrono::steady_clock::now();
  uint64_t failures = 0;
  double simulated = 0, convergence_max = 0, convergence_total = 0, tasks = 0, heals = 0;
  std::map<std::string, uint64_t> faults;
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t s = from + i * stride;
    kvstore::sim::SimResult r = kvstore::sim::RunSeed(s, config);
    simulated += r.simulated_seconds;
    tasks += static_cast<double>(r.tasks_run);
    convergence_max = std::max(convergence_max, r.convergence_seconds);
    convergence_total += r.convergence_total_seconds;
    heals += static_cast<double>(r.heals);
    for (const auto& [name, n] : r.faults) faults[name] += n;
    if (!r.violation.empty()) {
      ++failures;
      std::printf("FAIL seed=%" PRIu64 " %s\n", s, r.violation.c_str());
    }
    if (twice) {
      kvstore::sim::SimResult again = kvstore::sim::RunSeed(s, config);
      if (again.hash != r.hash) {
        ++failures;
        std::printf("FAIL seed=%" PRIu64 " replay differs: hash %016" PRIx64 " then %016" PRIx64
                    "\n",
                    s, r.hash, again.hash);
      }
    }
    std::fflush(stdout);
  }
  if (const int threads = Threads(); threads != 1) {
    ++failures;
    std::printf("FAIL %d threads ran, not 1: a real thread makes runs nondeterministic\n", threads);
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // One line scripts/sim.sh adds up across processes.
  std::printf("summary seeds=%" PRIu64 " failures=%" PRIu64
              " wall_s=%.3f simulated_s=%.1f tasks=%.0f heals=%.0f convergence_total_s=%.1f"
              " convergence_max_s=%.1f",
              count, failures, wall, simulated, tasks, heals, convergence_total, convergence_max);
  for (const auto& [name, n] : faults) std::printf(" fault_%s=%" PRIu64, name.c_str(), n);
  std::printf("\n");
  return failures == 0 ? 0 : 1;
}

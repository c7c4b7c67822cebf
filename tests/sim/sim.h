// A seeded, deterministic simulation of the stores over the in-memory backend (issue 26): one
// 64-bit seed decides the whole run. One thread drives everything: each collaborator (SyncStore
// writers, WatchStore readers) and the in-memory server run their tasks on their own
// ManualExecutor, and the seed picks which executor runs its next task, when the FakeClock moves
// and which faults strike. Invariants are checked as the run goes.
#ifndef KVSTORE_TESTS_SIM_SIM_H_
#define KVSTORE_TESTS_SIM_SIM_H_

#include <cstdint>
#include <map>
#include <string>

namespace kvstore::sim {

// What one seed's run did.
struct SimResult {
  uint64_t seed = 0;
  uint64_t hash = 0;      // of every decision and every observation, identical on every replay
  std::string options;    // the options and fault rates the seed picked
  std::string violation;  // empty: every invariant held
  double simulated_seconds = 0;
  double convergence_seconds = 0;        // after the faults healed, until every view agreed (max)
  uint64_t heals = 0;                    // times the faults stopped and every view converged
  double convergence_total_seconds = 0;  // summed over the heals
  uint64_t steps = 0;
  uint64_t tasks_run = 0;
  std::map<std::string, uint64_t> faults;  // by class
};

struct SimConfig {
  // Multiplies the number of steps of the run (1: a few thousand).
  double length = 1.0;
  // Prints every decision (for debugging a seed).
  bool trace = false;
};

SimResult RunSeed(uint64_t seed, const SimConfig& config = {});

}  // namespace kvstore::sim

#endif  // KVSTORE_TESTS_SIM_SIM_H_

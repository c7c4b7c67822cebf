// Bugs planted on purpose, for the simulation (tests/sim) to prove it catches them. They exist
// only in a build configured with -DKVSTORE_SIM_PLANTED_BUGS=ON (`make sim-planted`), which the
// simulation runs one bug at a time; in every other build Planted() is a constant false and the
// planted branches compile away. Private to the library.
#ifndef KVSTORE_CORE_PLANTED_BUGS_H_
#define KVSTORE_CORE_PLANTED_BUGS_H_

#include <string_view>

namespace kvstore::internal {

enum class PlantedBug {
  kNone = 0,
  // The in-memory watch's re-list after a compaction reports no deletes (Cilium #24740).
  kSkipRelistDiff,
  // SyncStore writes the synced canary without waiting for the keys upserted before Synced().
  kCanaryBeforeDrain,
  // The in-memory watch drops the last event of each batch it takes from the history.
  kDropLastEvent,
  // The in-memory server keeps a revoked lease as the session's lease for new writes, which then
  // fail (Cilium #42596).
  kReuseExpiredLease,
  // The in-memory watch resumes one revision too late after a re-list.
  kResumeWrongRevision,
  // The in-memory watch resumes a few revisions behind its listing, replaying older values
  // (Cilium #32005: a watch resumed on a member with other revisions).
  kResumeBehind,
  // WatchStore forgets the keys gone stale across a restart instead of deleting them.
  kNoStaleDelete,
  // SyncStore does not re-queue keys whose lease expired.
  kLostLeaseNotRequeued,
};

#ifdef KVSTORE_PLANTED_BUGS
// The one bug active in this process (kNone: none). Set once by the simulation before it starts.
PlantedBug& ActivePlantedBug();
inline bool Planted(PlantedBug bug) { return ActivePlantedBug() == bug; }
#else
constexpr bool Planted(PlantedBug) { return false; }
#endif

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_PLANTED_BUGS_H_

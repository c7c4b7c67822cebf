// One write of the heartbeat, shared by RunHeartbeat (a loop on the caller's thread) and the
// mesh's heartbeat (a coroutine on its strand). Private to src/mesh.
#ifndef KVSTORE_MESH_HEARTBEAT_WRITE_H_
#define KVSTORE_MESH_HEARTBEAT_WRITE_H_

#include <chrono>

#include "kvstore/backend.h"
#include "kvstore/context.h"

namespace kvstore::mesh::internal {

// Writes cilium/.heartbeat = FormatHeartbeat(now) (leased when `lease`), bounded to 25 s as
// Cilium bounds it; a failure is logged unless `ctx` is done. Blocks on the backend.
void WriteHeartbeat(const Context& ctx, Backend& backend, bool lease,
                    std::chrono::system_clock::time_point now);

}  // namespace kvstore::mesh::internal

#endif  // KVSTORE_MESH_HEARTBEAT_WRITE_H_

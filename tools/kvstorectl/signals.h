// A context that ends on SIGINT or SIGTERM, for commands that run until the user stops them.
#ifndef KVSTORE_TOOLS_KVSTORECTL_SIGNALS_H_
#define KVSTORE_TOOLS_KVSTORECTL_SIGNALS_H_

#include "kvstore/context.h"

namespace kvstorectl {

// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread started after it) and
// starts a thread that cancels the returned context when one of them arrives. Call once, early in
// main, before any other thread exists.
kvstore::Context InstallSignalContext();

}  // namespace kvstorectl

#endif  // KVSTORE_TOOLS_KVSTORECTL_SIGNALS_H_

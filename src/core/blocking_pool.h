// The elastic pool for work that may block (internal::Offload's blocking calls, and components
// whose tasks wait on a server, such as the etcd backend's retries and logins), as an Executor
// to own a share of. Private to the library.
#ifndef KVSTORE_CORE_BLOCKING_POOL_H_
#define KVSTORE_CORE_BLOCKING_POOL_H_

#include <memory>

#include "kvstore/executor.h"

namespace kvstore::internal {

// internal::BlockingPool() (core/task.h) as a shared pointer; the pool is never destroyed.
std::shared_ptr<Executor> SharedBlockingPool();

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_BLOCKING_POOL_H_

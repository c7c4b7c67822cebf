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

// The pool for calls into user code that may block for as long as it likes (SPEC: an observer
// may block, delaying its own store only; a WatchStoreManager function runs until its context
// ends). Elastic like BlockingPool(), with CallbackPoolThreads() threads while calls return;
// when every thread is held by a call that does not return (20 ms without any thread taking a
// queued call) it adds one, without limit, so that such a call delays only itself. Never
// destroyed.
Executor& CallbackPool();
// The threads CallbackPool() runs at once while its calls return.
size_t CallbackPoolThreads();

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_BLOCKING_POOL_H_

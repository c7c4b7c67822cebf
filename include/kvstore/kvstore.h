// Everything public in one include.
#ifndef KVSTORE_KVSTORE_H_
#define KVSTORE_KVSTORE_H_

#include "kvstore/backend.h"
#include "kvstore/backend_metrics.h"
#include "kvstore/clock.h"
#include "kvstore/context.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/events.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/mesh/cluster_config.h"
#include "kvstore/mesh/heartbeat.h"
#include "kvstore/mesh/mesh.h"
#include "kvstore/paths.h"
#include "kvstore/store/key.h"
#include "kvstore/store/metrics.h"
#include "kvstore/store/shared_store.h"
#include "kvstore/store/sync_store.h"
#include "kvstore/store/watch_store.h"
#include "kvstore/store/watch_store_manager.h"
#include "kvstore/workqueue/delaying_queue.h"
#include "kvstore/workqueue/queue.h"
#include "kvstore/workqueue/rate_limiter.h"
#include "kvstore/workqueue/rate_limiting_queue.h"

#endif  // KVSTORE_KVSTORE_H_

// Cilium's state as typed keys: nodes, identities, ipcache entries, services and service
// exports, byte-compatible with Cilium's agents (see README "Cilium's state, typed").
#ifndef KVSTORE_CILIUM_CILIUM_H_
#define KVSTORE_CILIUM_CILIUM_H_

#include "kvstore/cilium/identity.h"
#include "kvstore/cilium/ipcache.h"
#include "kvstore/cilium/labels.h"
#include "kvstore/cilium/layout.h"
#include "kvstore/cilium/net.h"
#include "kvstore/cilium/node.h"
#include "kvstore/cilium/service.h"
#include "kvstore/cilium/service_export.h"
#include "kvstore/cilium/validation.h"

#endif  // KVSTORE_CILIUM_CILIUM_H_

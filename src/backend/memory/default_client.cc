#include <memory>
#include <mutex>
#include <utility>

#include "kvstore/backend.h"
#include "kvstore/memory/in_memory_store.h"
#include "kvstore/mutex.h"

namespace kvstore {
namespace {

struct DefaultClientState {
  Mutex mu;  // guards client
  std::shared_ptr<Backend> client ABSL_GUARDED_BY(mu);
};

// Never destroyed: stores may use the default client from their own threads until the process
// ends, after static destructors have run.
DefaultClientState& State() {
  static auto* state = new DefaultClientState;
  return *state;
}

}  // namespace

std::shared_ptr<Backend> DefaultClient() {
  DefaultClientState& state = State();
  MutexLock lock(state.mu);
  if (!state.client) state.client = memory::InMemoryStore::Create()->NewClient("default");
  return state.client;
}

void SetDefaultClient(std::shared_ptr<Backend> backend) {
  std::shared_ptr<Backend> previous;  // released without the lock held
  DefaultClientState& state = State();
  MutexLock lock(state.mu);
  previous = std::move(state.client);
  state.client = std::move(backend);
}

}  // namespace kvstore

// A SharedStore whose work runs on a test's ManualExecutor (Configuration::executor): the calls
// that wait for the store's tasks (Close, Release, destruction) go through WhileRunning.
#ifndef KVSTORE_TESTS_SUPPORT_DRIVEN_SHARED_STORE_H_
#define KVSTORE_TESTS_SUPPORT_DRIVEN_SHARED_STORE_H_

#include <cstddef>
#include <memory>
#include <utility>

#include "kvstore/context.h"
#include "kvstore/executor.h"
#include "kvstore/store/shared_store.h"
#include "tests/support/while_running.h"

namespace kvstore::testing {

// A store whose work runs on the test's ManualExecutor: Join, Close, Release and destruction go
// through WhileRunning; the other calls never wait for the executor and are made directly.
class DrivenStore {
 public:
  DrivenStore() = default;
  DrivenStore(ManualExecutor* executor, std::unique_ptr<store::SharedStore> store)
      : executor_(executor), store_(std::move(store)) {}
  DrivenStore(DrivenStore&&) = default;
  DrivenStore& operator=(DrivenStore&& other) noexcept {
    Reset();  // the store replaced goes through WhileRunning too
    executor_ = other.executor_;
    store_ = std::move(other.store_);
    return *this;
  }
  ~DrivenStore() { Reset(); }

  store::SharedStore* operator->() const { return store_.get(); }
  store::SharedStore* get() const { return store_.get(); }
  bool operator==(std::nullptr_t) const { return store_ == nullptr; }
  void Close(const Context& ctx) {
    WhileRunning(*executor_, [&] { store_->Close(ctx); });
  }
  void Release() {
    WhileRunning(*executor_, [&] { store_->Release(); });
  }
  void Reset() {
    if (store_ != nullptr) WhileRunning(*executor_, [&] { store_.reset(); });
  }

 private:
  ManualExecutor* executor_ = nullptr;
  std::unique_ptr<store::SharedStore> store_;
};

}  // namespace kvstore::testing

#endif  // KVSTORE_TESTS_SUPPORT_DRIVEN_SHARED_STORE_H_

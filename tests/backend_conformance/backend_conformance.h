// The backend conformance suite: SPEC 3's semantics, written once against an abstract factory and
// run against every backend. Adding a backend is one line in a test binary that links
// `kvstore_backend_conformance`:
//
//   std::unique_ptr<kvstore::testing::BackendFactory> MakeInMemoryFactory() { ... }
//   INSTANTIATE_BACKEND_CONFORMANCE(InMemory, MakeInMemoryFactory);
//
// The maker runs once per test (before it) and the factory is destroyed after it, so a factory
// may start and stop servers per test, or share one across tests (e.g. through a static). Tests
// keep apart by writing only under their own unique key prefix.
#ifndef KVSTORE_TESTS_BACKEND_CONFORMANCE_BACKEND_CONFORMANCE_H_
#define KVSTORE_TESTS_BACKEND_CONFORMANCE_BACKEND_CONFORMANCE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kvstore/backend.h"

namespace kvstore::testing {

// Makes the clients of one backend under test and reaches into it from outside.
class BackendFactory {
 public:
  virtual ~BackendFactory() = default;

  // A new client with its own session (leases, observers), as a separate process would have.
  // Tests Close() their clients or drop them; the factory may also clean up when destroyed.
  virtual std::shared_ptr<Backend> NewClient() = 0;

  // Makes `client` lose its lease(s) from outside, as when they expire or an operator revokes
  // them: its leased keys go away and its lease-expired observers fire. `lease_ids` are the ids the
  // test saw on the client's leased keys (ListPrefix), for backends that revoke by id. The client
  // may notice asynchronously; tests wait up to `Timeout()` for the effects.
  virtual void ExpireSession(const Backend& client, const std::vector<int64_t>& lease_ids) = 0;

  // Compacts the backend's history at its current revision: watchers behind it must re-list.
  virtual void Compact() = 0;

  // How long tests wait for asynchronous effects (watch events, lease loss) before failing.
  virtual std::chrono::milliseconds Timeout() const { return std::chrono::seconds(30); }
};

using BackendFactoryMaker = std::function<std::unique_ptr<BackendFactory>()>;

// The parameter of the suite: a named maker.
struct BackendConformanceParam {
  std::string name;
  BackendFactoryMaker make;
};

inline void PrintTo(const BackendConformanceParam& param, std::ostream* os) { *os << param.name; }

// The fixture. Each test gets a fresh factory and a unique key prefix, "conformance/<test>/<n>/".
class BackendConformanceTest : public ::testing::TestWithParam<BackendConformanceParam> {
 protected:
  void SetUp() override;
  void TearDown() override;

  BackendFactory& factory() { return *factory_; }
  // A new client, closed at TearDown.
  std::shared_ptr<Backend> NewClient();
  // The test's own prefix, ending in "/".
  const std::string& prefix() const { return prefix_; }
  // prefix() + name.
  std::string Key(const std::string& name) const { return prefix_ + name; }
  std::chrono::milliseconds Timeout() const { return factory_->Timeout(); }

 private:
  std::unique_ptr<BackendFactory> factory_;
  std::vector<std::shared_ptr<Backend>> clients_;
  std::string prefix_;
};

}  // namespace kvstore::testing

// Runs every conformance test against the backend that `factory_maker` (a function or functor
// returning std::unique_ptr<BackendFactory>) builds. Use it at global scope or in any namespace
// but kvstore::testing. Tests are named
// "<instance_name>/BackendConformanceTest.<test>/<instance_name>".
#define INSTANTIATE_BACKEND_CONFORMANCE(instance_name, factory_maker)                         \
  using ::kvstore::testing::BackendConformanceTest;                                           \
  INSTANTIATE_TEST_SUITE_P(                                                                   \
      instance_name, BackendConformanceTest,                                                  \
      ::testing::Values(                                                                      \
          ::kvstore::testing::BackendConformanceParam{#instance_name, (factory_maker)}),      \
      [](const ::testing::TestParamInfo<::kvstore::testing::BackendConformanceParam>& info) { \
        return info.param.name;                                                               \
      })

#endif  // KVSTORE_TESTS_BACKEND_CONFORMANCE_BACKEND_CONFORMANCE_H_

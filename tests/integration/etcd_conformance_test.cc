// The backend conformance suite (tests/backend_conformance) against the etcd backend and a real
// single-member etcd, shared by all tests of the binary (each test writes under its own prefix).
#include <memory>
#include <set>
#include <vector>

#include "tests/backend_conformance/backend_conformance.h"
#include "tests/integration/etcd_test_util.h"

namespace {

using ::kvstore::Backend;
using ::kvstore::testing::BackendFactory;
using ::kvstore::testing::EtcdCluster;

// One cluster for the whole binary, stopped (and its data removed) after the last test.
class SharedClusterEnvironment : public ::testing::Environment {
 public:
  static EtcdCluster& Get() {
    if (!cluster_) {
      auto started = EtcdCluster::Start();
      if (!started.ok()) {
        ADD_FAILURE() << started.status();
        std::abort();
      }
      cluster_ = std::move(*started);
    }
    return *cluster_;
  }
  void TearDown() override { cluster_.reset(); }

 private:
  static std::unique_ptr<EtcdCluster> cluster_;
};
std::unique_ptr<EtcdCluster> SharedClusterEnvironment::cluster_;
const auto* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new SharedClusterEnvironment());

EtcdCluster& SharedCluster() { return SharedClusterEnvironment::Get(); }

class EtcdFactory final : public BackendFactory {
 public:
  std::shared_ptr<Backend> NewClient() override {
    kvstore::etcd::EtcdConfig config = SharedCluster().ClientConfig();
    // Keep-alives every second notice an expired session quickly.
    config.lease_ttl = std::chrono::seconds(3);
    return kvstore::testing::MustConnect(config);
  }
  void ExpireSession(const Backend& /*client*/, const std::vector<int64_t>& lease_ids) override {
    std::set<int64_t> unique(lease_ids.begin(), lease_ids.end());
    for (int64_t id : unique) {
      absl::Status status = SharedCluster().RevokeLease(id);
      EXPECT_TRUE(status.ok()) << status;
    }
  }
  void Compact() override {
    absl::Status status = SharedCluster().Compact();
    EXPECT_TRUE(status.ok()) << status;
  }
};

std::unique_ptr<BackendFactory> MakeEtcdFactory() { return std::make_unique<EtcdFactory>(); }

INSTANTIATE_BACKEND_CONFORMANCE(Etcd, MakeEtcdFactory);

}  // namespace

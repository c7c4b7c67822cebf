// EtcdConfig::FromFile and the configuration checks of NewEtcdBackend (no server needed).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "kvstore/etcd/etcd_backend.h"

namespace kvstore::etcd {
namespace {

class EtcdConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvstore-etcd-config-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& text) {
    std::string path = (dir_ / "etcd.yaml").string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(EtcdConfigTest, ReadsCiliumsKeys) {
  auto config = EtcdConfig::FromFile(Write(R"(---
endpoints:
- https://10.0.0.1:2379
- https://10.0.0.2:2379
trusted-ca-file: '/var/lib/etcd-secrets/etcd-client-ca.crt'
cert-file: /var/lib/etcd-secrets/etcd-client.crt
key-file: /var/lib/etcd-secrets/etcd-client.key
username: cilium
password: "pa:ss"
dial-timeout: 5s
)"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->endpoints,
            (std::vector<std::string>{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}));
  EXPECT_EQ(config->trusted_ca_file, "/var/lib/etcd-secrets/etcd-client-ca.crt");
  EXPECT_EQ(config->cert_file, "/var/lib/etcd-secrets/etcd-client.crt");
  EXPECT_EQ(config->key_file, "/var/lib/etcd-secrets/etcd-client.key");
  EXPECT_EQ(config->username, "cilium");
  EXPECT_EQ(config->password, "pa:ss");
  EXPECT_EQ(config->lease_ttl, std::chrono::minutes(15)) << "defaults kept";
}

TEST_F(EtcdConfigTest, SingleEndpointString) {
  auto config = EtcdConfig::FromFile(Write("endpoints: http://127.0.0.1:2379\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->endpoints, std::vector<std::string>{"http://127.0.0.1:2379"});
}

TEST_F(EtcdConfigTest, BadFilesAreInvalidArgumentNamingThePath) {
  struct Case {
    const char* text;
    const char* reason;
  } cases[] = {
      {"endpoints: [a, b\n", "not valid YAML"},
      {"- just\n- a list\n", "mapping"},
      {"trusted-ca-file: x\n", "no 'endpoints'"},
      {"endpoints: []\n", "no 'endpoints'"},
      {"endpoints: {a: b}\n", "'endpoints' must be a list"},
      {"endpoints: [[a]]\n", "'endpoints' must be a list"},
      {"endpoints: [a:1]\ncert-file: [x]\n", "'cert-file' must be a string"},
      {"endpoints: [a:1]\ncert-file: c\n", "'cert-file' and 'key-file'"},
  };
  for (const Case& c : cases) {
    std::string path = Write(c.text);
    auto config = EtcdConfig::FromFile(path);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(config.status().message().find(path), absl::string_view::npos) << config.status();
    EXPECT_NE(config.status().message().find(c.reason), absl::string_view::npos)
        << c.text << " -> " << config.status();
  }
}

TEST_F(EtcdConfigTest, MissingFile) {
  auto config = EtcdConfig::FromFile((dir_ / "nope.yaml").string());
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(config.status().message().find("nope.yaml"), absl::string_view::npos);
}

TEST_F(EtcdConfigTest, NewEtcdBackendRejectsBadConfigurations) {
  auto expect_invalid = [](EtcdConfig config, const char* reason) {
    auto backend = NewEtcdBackend(config);
    ASSERT_FALSE(backend.ok()) << reason;
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(backend.status().message().find(reason), absl::string_view::npos) << backend.status();
  };
  expect_invalid(EtcdConfig{}, "no endpoints");
  EtcdConfig bad_port;
  bad_port.endpoints = {"127.0.0.1:99999"};
  expect_invalid(bad_port, "bad port");
  EtcdConfig bad_scheme;
  bad_scheme.endpoints = {"unix:///run/etcd.sock"};
  expect_invalid(bad_scheme, "only http:// and https://");
  EtcdConfig half_tls;
  half_tls.endpoints = {"127.0.0.1:2379"};
  half_tls.cert_file = "/x.crt";
  expect_invalid(half_tls, "cert-file and key-file");
  EtcdConfig missing_ca;
  missing_ca.endpoints = {"https://127.0.0.1:2379"};
  missing_ca.trusted_ca_file = "/nonexistent/ca.crt";
  expect_invalid(missing_ca, "/nonexistent/ca.crt");
}

TEST_F(EtcdConfigTest, AcceptedEndpointForms) {
  for (const char* endpoint : {"127.0.0.1:2379", "http://127.0.0.1:2379", "http://127.0.0.1:2379/",
                               "localhost:2379", "[::1]:2379", "etcd.example"}) {
    EtcdConfig config;
    config.endpoints = {endpoint};
    auto backend = NewEtcdBackend(config);
    EXPECT_TRUE(backend.ok()) << endpoint << ": " << backend.status();
    if (backend.ok()) (*backend)->Close();
  }
}

}  // namespace
}  // namespace kvstore::etcd

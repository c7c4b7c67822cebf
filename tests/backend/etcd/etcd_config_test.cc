// EtcdConfig::FromFile and the configuration checks of NewEtcdBackend (no server needed).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>

#include "backend/etcd/request_limits.h"
#include "kvstore/etcd/etcd_backend.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace kvstore::etcd {
namespace {

// Everything logged through spdlog's default logger while alive.
class CapturedLogs {
 public:
  CapturedLogs() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>(
        "captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLogs() { spdlog::set_default_logger(previous_); }
  std::string Text() {
    spdlog::default_logger()->flush();
    return out_.str();
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream out_;
};

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

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

TEST_F(EtcdConfigTest, ReadsTheGoClientsTlsAndTimingKeys) {
  auto config = EtcdConfig::FromFile(Write(R"(
endpoints: [https://10.0.0.1:2379]
ca-file: /old/ca.crt
insecure-skip-tls-verify: true
dial-timeout: 1m30s
dial-keep-alive-time: 20000000000
dial-keep-alive-timeout: 500ms
)"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->trusted_ca_file, "/old/ca.crt") << "ca-file is the CA without trusted-ca-file";
  EXPECT_TRUE(config->insecure_skip_tls_verify);
  EXPECT_FALSE(config->insecure_transport);
  EXPECT_EQ(config->dial_timeout, std::chrono::seconds(90));
  EXPECT_EQ(config->keepalive_time, std::chrono::seconds(20)) << "a number is nanoseconds";
  EXPECT_EQ(config->keepalive_timeout, std::chrono::milliseconds(500));
}

TEST_F(EtcdConfigTest, TrustedCaFileWinsOverCaFile) {
  auto config = EtcdConfig::FromFile(Write(
      "endpoints: [a:1]\nca-file: /old.crt\ntrusted-ca-file: /new.crt\ninsecure-transport: yes\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->trusted_ca_file, "/new.crt");
  EXPECT_TRUE(config->insecure_transport);
}

TEST_F(EtcdConfigTest, KeysWithoutEffectAreWarnedAboutOnceEach) {
  CapturedLogs logs;
  const std::string path =
      Write("endpoints: [a:1]\nauto-sync-interval: 30s\nendpoint: typo:2379\nEndpoints: [b:2]\n");
  for (int i = 0; i < 3; ++i) {
    auto config = EtcdConfig::FromFile(path);
    ASSERT_TRUE(config.ok()) << config.status();
    // Keys match without regard to case, as in etcd's client: both lists count.
    EXPECT_EQ(config->endpoints, (std::vector<std::string>{"a:1", "b:2"}));
  }
  const std::string text = logs.Text();
  EXPECT_EQ(Count(text, "unknown key 'endpoint' is ignored"), 1u) << text;
  EXPECT_EQ(Count(text, "'auto-sync-interval' is not supported by this client"), 1u) << text;
  EXPECT_EQ(Count(text, path), 2u) << text;
  EXPECT_EQ(Count(text, "[warning]"), 2u) << text;
}

TEST_F(EtcdConfigTest, BadValuesOfTheNewKeysAreInvalidArgument) {
  struct Case {
    const char* text;
    const char* reason;
  } cases[] = {
      {"endpoints: [a:1]\ninsecure-transport: maybe\n", "'insecure-transport' must be true"},
      {"endpoints: [a:1]\ninsecure-skip-tls-verify: [x]\n", "must be true or false"},
      {"endpoints: [a:1]\ndial-timeout: soon\n", "is not a duration"},
      {"endpoints: [a:1]\ndial-timeout: 5\n", "below 1 ms"},
      {"endpoints: [a:1]\ndial-keep-alive-time: {a: 1}\n", "must be a duration"},
  };
  for (const Case& c : cases) {
    auto config = EtcdConfig::FromFile(Write(c.text));
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(config.status().message().find(c.reason), absl::string_view::npos)
        << c.text << " -> " << config.status();
  }
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
  EtcdConfig insecure_https;
  insecure_https.endpoints = {"https://127.0.0.1:2379"};
  insecure_https.insecure_transport = true;
  expect_invalid(insecure_https, "insecure-transport is set");
  // With insecure-transport, TLS files are not even read: no TLS is spoken.
  EtcdConfig insecure_with_files;
  insecure_with_files.endpoints = {"127.0.0.1:2379"};
  insecure_with_files.insecure_transport = true;
  insecure_with_files.trusted_ca_file = "/nonexistent/ca.crt";
  auto plain = NewEtcdBackend(insecure_with_files);
  EXPECT_TRUE(plain.ok()) << plain.status();
  // An http:// endpoint speaks plain text whatever files are given, so they are not needed.
  EtcdConfig http_with_files;
  http_with_files.endpoints = {"http://127.0.0.1:2379"};
  http_with_files.trusted_ca_file = "/nonexistent/ca.crt";
  auto http = NewEtcdBackend(http_with_files);
  EXPECT_TRUE(http.ok()) << http.status();
}

// Cilium's load limits, under the names its kvstore-opt gives them.
TEST_F(EtcdConfigTest, ReadsCiliumsLoadLimits) {
  absl::StatusOr<EtcdConfig> config = EtcdConfig::FromFile(
      Write("endpoints: [127.0.0.1:2379]\netcd.qps: 20\netcd.bootstrapQps: \"5.5\"\n"
            "etcd.maxInflight: 8\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->qps, 20);
  EXPECT_EQ(config->bootstrap_qps, 5.5);
  EXPECT_EQ(config->max_inflight, 8u);
  // 0 is "no limit" when written as such.
  config = EtcdConfig::FromFile(Write("endpoints: [127.0.0.1:2379]\netcd.qps: 0\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->qps, 0);
}

// cilium/cilium#15742: an empty etcd.qps was read as 0, which means "no limit", and Cilium ran
// without its rate limit for years. Here a limit that cannot be read is an error, never no limit;
// and every way from a configured limit to the limits in force keeps it.
TEST_F(EtcdConfigTest, AConfiguredLimitNeverBecomesUnlimited) {
  for (const char* value : {"\"\"", "", "abc", "-1", "nan", "inf", "[1]", "\"20 qps\""}) {
    for (const char* key : {"etcd.qps", "etcd.bootstrapQps", "etcd.maxInflight"}) {
      absl::StatusOr<EtcdConfig> config = EtcdConfig::FromFile(
          Write(std::string("endpoints: [127.0.0.1:2379]\n") + key + ": " + value + "\n"));
      ASSERT_FALSE(config.ok()) << key << ": " << value << " was accepted";
      EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(config.status().message().find(key), absl::string_view::npos) << config.status();
    }
  }
  EXPECT_FALSE(
      EtcdConfig::FromFile(Write("endpoints: [127.0.0.1:2379]\netcd.maxInflight: 2.5\n")).ok());

  // The limits in force.
  EtcdConfig config;
  config.endpoints = {"127.0.0.1:2379"};
  config.qps = 20;
  absl::StatusOr<RequestLimits> limits = EffectiveRequestLimits(config);
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->qps, 20);
  EXPECT_EQ(limits->max_inflight, 20u) << "an unset max_inflight follows qps, as in Cilium";
  config.qps = 0.5;
  limits = EffectiveRequestLimits(config);
  ASSERT_TRUE(limits.ok());
  EXPECT_EQ(limits->max_inflight, 1u) << "a fraction of a request a second still bounds";
  config.max_inflight = 3;
  config.bootstrap_qps = 2;
  limits = EffectiveRequestLimits(config);
  ASSERT_TRUE(limits.ok());
  EXPECT_EQ(limits->max_inflight, 3u);
  EXPECT_EQ(limits->bootstrap_qps, 2);
  EXPECT_EQ(limits->qps, 0.5);
  // Values set from code that mean nothing are refused, not taken as "no limit".
  for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    EtcdConfig rate = config;
    rate.qps = bad;
    EXPECT_FALSE(EffectiveRequestLimits(rate).ok()) << bad;
    EXPECT_EQ(NewEtcdBackend(rate).status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EtcdConfig bootstrap = config;
    bootstrap.bootstrap_qps = bad;
    EXPECT_EQ(NewEtcdBackend(bootstrap).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// The bound on requests in flight: never more holders than the limit, waiting callers and
// queued starts get the slots as they free, a done context stops a wait.
TEST(InflightGateTest, NeverMoreThanTheLimit) {
  InflightGate gate(2);
  Context ctx;
  ASSERT_TRUE(gate.Enter(ctx));
  int started = 0;
  gate.EnterAsync([&] { ++started; });
  EXPECT_EQ(started, 1);
  EXPECT_EQ(gate.held(), 2u);
  gate.EnterAsync([&] { ++started; });  // queued
  EXPECT_EQ(started, 1);
  auto [done_ctx, cancel] = WithCancel(ctx);
  cancel();
  EXPECT_FALSE(gate.Enter(done_ctx));
  gate.Leave();  // hands the slot to the queued start
  EXPECT_EQ(started, 2);
  EXPECT_EQ(gate.held(), 2u);
  gate.Leave();
  gate.Leave();
  EXPECT_EQ(gate.held(), 0u);
  InflightGate unlimited(0);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(unlimited.Enter(ctx));
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

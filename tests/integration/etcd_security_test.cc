// TLS (certificates made with openssl at run time), mutual TLS, user/password authentication with
// token refresh, and EtcdConfig::FromFile, against a real etcd.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <string>

#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

class EtcdTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> dir = MakeTempDir("tls");
    ASSERT_TRUE(dir.ok());
    dir_ = new std::string(*dir);
    absl::StatusOr<TlsFiles> files = GenerateTlsFiles(*dir_);
    ASSERT_TRUE(files.ok()) << files.status();
    tls_ = new TlsFiles(*files);
    EtcdClusterOptions options;
    options.tls = tls_;
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster).release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    if (dir_) RemoveTree(*dir_);
    delete dir_;
    delete tls_;
  }
  void SetUp() override { ASSERT_NE(cluster_, nullptr); }

  static EtcdCluster* cluster_;
  static TlsFiles* tls_;
  static std::string* dir_;
  Context ctx_;
};

EtcdCluster* EtcdTlsTest::cluster_ = nullptr;
TlsFiles* EtcdTlsTest::tls_ = nullptr;
std::string* EtcdTlsTest::dir_ = nullptr;

TEST_F(EtcdTlsTest, MutualTlsWorks) {
  std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
  ASSERT_TRUE(backend->Update(ctx_, "tls/a", "1", true).ok());
  EXPECT_EQ(backend->Get(ctx_, "tls/a")->value_or(""), "1");
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, "tls/", 4);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  EXPECT_EQ(view.keys.size(), 1u);
  watcher->Stop();
  const BackendStatus status = backend->Status();
  EXPECT_EQ(status.state, BackendState::kOk) << status.message;
}

// A watch stopped as its stream starts: gRPC 1.51 resets a stream whose headers are still queued,
// which etcd's HTTP/2 server under TLS answers by closing the connection (GOAWAY), failing every
// other call on it. It happened about once in a hundred runs of the test above.
TEST_F(EtcdTlsTest, WatchesStoppedAsTheyStartKeepTheConnection) {
  constexpr int kRounds = 200;
  for (int round = 0; round < kRounds; ++round) {
    std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
    std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, "tls/", 4);
    WatchView view;
    ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
    watcher->Stop();
    const BackendStatus status = backend->Status();
    ASSERT_EQ(status.state, BackendState::kOk) << "round " << round << ": " << status.message;
  }
}

// The same for unary calls: a call whose caller's context ends as it starts must not close the
// connection under the others. The watch beside them would restart if it did.
TEST_F(EtcdTlsTest, CallsCancelledAsTheyStartKeepTheConnection) {
  std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
  ASSERT_TRUE(backend->Update(ctx_, "tls/kept", "1", false).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, "tls/", 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  constexpr int kRounds = 300;
  for (int round = 0; round < kRounds; ++round) {
    auto [call_ctx, cancel] = WithCancel(ctx_);
    auto done = std::make_shared<std::promise<void>>();
    backend->GetAsync(call_ctx, "tls/kept",
                      [done](absl::StatusOr<std::optional<std::string>>) { done->set_value(); });
    cancel();
    ASSERT_EQ(done->get_future().wait_for(std::chrono::seconds(20)), std::future_status::ready)
        << "round " << round;
  }
  ASSERT_TRUE(backend->Update(ctx_, "tls/after", "2", false).ok());
  ASSERT_TRUE(
      view.ReadUntil(*watcher, [](const WatchView& v) { return v.keys.count("tls/after"); }));
  std::vector<WatchFreshness> watches = backend->Watches();
  ASSERT_EQ(watches.size(), 1u);
  uint64_t restarts = 0;
  std::string reasons;
  for (const auto& [reason, n] : watches[0].restarts) {
    restarts += n;
    reasons += reason + "=" + std::to_string(n) + " ";
  }
  EXPECT_EQ(restarts, 0u) << reasons;
  watcher->Stop();
}

TEST_F(EtcdTlsTest, WrongCaFailsClearly) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.trusted_ca_file = tls_->other_ca_cert;
  config.request_timeout = std::chrono::seconds(2);
  std::shared_ptr<Backend> backend = MustConnect(config);
  absl::Status status = backend->Update(ctx_, "tls/b", "1", false);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find("127.0.0.1"), absl::string_view::npos) << status;
  EXPECT_TRUE(status.message().find("CERTIFICATE_VERIFY_FAILED") != absl::string_view::npos ||
              status.message().find("handshake") != absl::string_view::npos)
      << status;
}

TEST_F(EtcdTlsTest, MissingClientCertificateIsRefused) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.cert_file.clear();
  config.key_file.clear();
  config.request_timeout = std::chrono::seconds(2);
  std::shared_ptr<Backend> backend = MustConnect(config);
  EXPECT_FALSE(backend->Update(ctx_, "tls/c", "1", false).ok());
}

TEST_F(EtcdTlsTest, UnreadableFilesAreInvalidArgument) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.trusted_ca_file = *dir_ + "/missing.crt";
  auto backend = etcd::NewEtcdBackend(config);
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(backend.status().message().find("missing.crt"), absl::string_view::npos);
}

TEST_F(EtcdTlsTest, FromFileReadsCiliumsKeys) {
  std::string path = *dir_ + "/etcd.yaml";
  {
    std::ofstream out(path);
    out << "---\nendpoints:\n- " << cluster_->ClientEndpoint(0) << "\n"
        << "trusted-ca-file: '" << tls_->ca_cert << "'\n"
        << "cert-file: '" << tls_->client_cert << "'\n"
        << "key-file: '" << tls_->client_key << "'\n";
  }
  absl::StatusOr<etcd::EtcdConfig> config = etcd::EtcdConfig::FromFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  std::shared_ptr<Backend> backend = MustConnect(*config);
  ASSERT_TRUE(backend->Update(ctx_, "tls/file", "1", false).ok());
  EXPECT_EQ(backend->Get(ctx_, "tls/file")->value_or(""), "1");
}

class EtcdAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EtcdClusterOptions options;
    options.extra_args = {"--auth-token-ttl=1"};  // tokens expire after a second unused
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    ASSERT_TRUE(cluster_->EnableAuth("s3cret").ok());
  }

  std::unique_ptr<EtcdCluster> cluster_;
  Context ctx_;
};

TEST_F(EtcdAuthTest, PasswordWorksAndExpiredTokensAreRenewed) {
  std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
  ASSERT_TRUE(backend->Update(ctx_, "auth/a", "1", true).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, "auth/", 8);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));
  // Let the token expire on the server; the next calls log in again by themselves.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  absl::Status status = backend->Update(ctx_, "auth/b", "2", true);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(backend->Get(ctx_, "auth/a")->value_or(""), "1");
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.keys.size() == 2; }));
  watcher->Stop();
  const BackendStatus backend_status = backend->Status();
  EXPECT_EQ(backend_status.state, BackendState::kOk) << backend_status.message;
}

TEST_F(EtcdAuthTest, WrongPasswordFailsClearly) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.password = "wrong";
  std::shared_ptr<Backend> backend = MustConnect(config);
  absl::Status status = backend->Update(ctx_, "auth/c", "1", false);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("authentication failed"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("root"), absl::string_view::npos) << status;
}

TEST_F(EtcdAuthTest, NoCredentialsIsRefused) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.username.clear();
  config.password.clear();
  std::shared_ptr<Backend> backend = MustConnect(config);
  EXPECT_FALSE(backend->Update(ctx_, "auth/d", "1", false).ok());
}

}  // namespace
}  // namespace kvstore::testing

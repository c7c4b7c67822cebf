// TLS the way production clusters run it, against real etcd: three members on 127.0.0.1,
// 127.0.0.2 and 127.0.0.3, each with a certificate valid only for its own address, client
// certificates required. The client checks each member against its own endpoint, keeps working
// when the member of its first endpoint is killed, refuses servers it cannot trust, and picks up
// rotated certificate files without a restart.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/integration/etcd_test_util.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;

const std::vector<std::string> kHosts = {"127.0.0.1", "127.0.0.2", "127.0.0.3"};

// Replaces `to` with a copy of `from` in one rename, as cert-manager's atomic writes do.
void ReplaceFile(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".new";
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(tmp, to);
}

class EtcdTlsClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> dir = MakeTempDir("tls-cluster");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = new std::string(*dir);
    absl::StatusOr<TlsFiles> files = GenerateTlsFiles(*dir_, kHosts);
    ASSERT_TRUE(files.ok()) << files.status();
    tls_ = new TlsFiles(*files);
  }
  static void TearDownTestSuite() {
    if (dir_) RemoveTree(*dir_);
    delete dir_;
    delete tls_;
  }

  void SetUp() override {
    ASSERT_NE(tls_, nullptr);
    EtcdClusterOptions options;
    options.members = 3;
    options.member_hosts = kHosts;
    options.tls = tls_;
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
  }

  // The client configuration with only the endpoint of `member`.
  etcd::EtcdConfig OnlyMember(int member) const {
    etcd::EtcdConfig config = cluster_->ClientConfig();
    config.endpoints = {cluster_->ClientEndpoint(member)};
    return config;
  }

  static std::string* dir_;
  static TlsFiles* tls_;
  std::unique_ptr<EtcdCluster> cluster_;
  Context ctx_;
};

std::string* EtcdTlsClusterTest::dir_ = nullptr;
TlsFiles* EtcdTlsClusterTest::tls_ = nullptr;

TEST_F(EtcdTlsClusterTest, EveryMemberIsCheckedAgainstItsOwnAddress) {
  // Each member alone, then all three in one client: every request succeeds whichever member
  // serves it (in turn, so each member serves some).
  for (int m = 0; m < 3; ++m) {
    std::shared_ptr<Backend> backend = MustConnect(OnlyMember(m));
    absl::Status status = backend->Update(ctx_, absl::StrCat("own/m", m), "v", false);
    EXPECT_TRUE(status.ok()) << kHosts[m] << ": " << status;
  }
  std::shared_ptr<Backend> backend = MustConnect(cluster_->ClientConfig());
  for (int i = 0; i < 12; ++i) {
    absl::Status status = backend->Update(ctx_, absl::StrCat("own/all", i), "v", false);
    ASSERT_TRUE(status.ok()) << status;
  }
  BackendStatus status = backend->Status();
  EXPECT_EQ(status.state, BackendState::kOk) << status.message;
  EXPECT_NE(status.message.find("3/3 connected"), std::string::npos) << status.message;
}

TEST_F(EtcdTlsClusterTest, KillingTheFirstEndpointsMemberStopsNothing) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  // Short enough that the lease would run out during the test without keep-alives.
  config.lease_ttl = 3s;
  std::shared_ptr<Backend> backend = MustConnect(config);
  ASSERT_TRUE(backend->Update(ctx_, "kill/leased", "mine", true).ok());
  absl::StatusOr<KeyValuePairs> before = backend->ListPrefix(ctx_, "kill/leased");
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->size(), 1u);
  const int64_t lease = before->begin()->second.lease_id;
  ASSERT_NE(lease, 0);
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx_, "kill/", 64);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));

  ASSERT_TRUE(cluster_->KillMember(0).ok());

  // Writes and reads go on through the other two members for several lease TTLs; only the
  // election (when member 0 led) may refuse a write for a moment.
  std::map<std::string, std::string> expected = {{"kill/leased", "mine"}};
  const auto until = std::chrono::steady_clock::now() + 10s;
  int written = 0;
  while (std::chrono::steady_clock::now() < until) {
    const std::string key = absl::StrCat("kill/k", written);
    absl::Status put = Retry([&] { return backend->Update(ctx_, key, "v", false); });
    ASSERT_TRUE(put.ok()) << put;
    absl::StatusOr<std::optional<std::string>> got = backend->Get(ctx_, key);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->value_or(""), "v");
    expected[key] = "v";
    ++written;
  }
  ASSERT_TRUE(view.ReadUntil(*watcher, [&](const WatchView& v) { return v.keys == expected; }))
      << "the watch saw " << view.keys.size() << " of " << expected.size() << " keys";
  EXPECT_EQ(view.list_done_count, 1);

  // The session lease was kept alive through the others: the key is still there, on it.
  absl::StatusOr<KeyValuePairs> after = backend->ListPrefix(ctx_, "kill/leased");
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), 1u) << "the leased key expired";
  EXPECT_EQ(after->begin()->second.lease_id, lease);
  BackendStatus status = backend->Status();
  EXPECT_EQ(status.state, BackendState::kWarning) << status.message;
  EXPECT_NE(status.message.find("2/3 connected"), std::string::npos) << status.message;
  watcher->Stop();
}

TEST_F(EtcdTlsClusterTest, UntrustedServerIsRefusedClearly) {
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.trusted_ca_file = tls_->other_ca_cert;
  config.request_timeout = 2s;
  std::shared_ptr<Backend> backend = MustConnect(config);
  absl::Status status = backend->Update(ctx_, "untrusted/a", "1", false);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find("127.0.0."), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("no connection within the request timeout"),
            absl::string_view::npos)
      << status;
  EXPECT_TRUE(status.message().find("CERTIFICATE_VERIFY_FAILED") != absl::string_view::npos ||
              status.message().find("andshake") != absl::string_view::npos)
      << status;
}

TEST_F(EtcdTlsClusterTest, CertificateOfAnotherNameIsRefused) {
  // "localhost" reaches member 0, whose certificate names 127.0.0.1 only.
  etcd::EtcdConfig config = cluster_->ClientConfig();
  config.endpoints = {
      absl::StrCat("https://localhost:",
                   cluster_->ClientEndpoint(0).substr(cluster_->ClientEndpoint(0).rfind(':') + 1))};
  config.request_timeout = 2s;
  std::shared_ptr<Backend> backend = MustConnect(config);
  absl::Status status = backend->Update(ctx_, "othername/a", "1", false);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find("localhost"), absl::string_view::npos) << status;

  // The same endpoint with insecure-skip-tls-verify connects: the client certificate is still
  // presented (the members require one), only the server's is not checked.
  config.insecure_skip_tls_verify = true;
  config.trusted_ca_file = tls_->other_ca_cert;
  std::shared_ptr<Backend> unchecked = MustConnect(config);
  absl::Status unchecked_status = unchecked->Update(ctx_, "othername/b", "1", false);
  EXPECT_TRUE(unchecked_status.ok()) << unchecked_status;
}

// One member with a single certificate (127.0.0.1): its files and the client's are replaced by a
// pair from a new CA, and etcd restarts trusting only that CA. The running client reconnects with
// the new files, without being restarted; a client still holding copies of the old files cannot.
TEST(EtcdTlsRotationTest, RotatedFilesAreUsedWithoutARestart) {
  absl::StatusOr<std::string> dir = MakeTempDir("tls-rotation");
  ASSERT_TRUE(dir.ok()) << dir.status();
  const std::string old_dir = *dir + "/old", new_dir = *dir + "/new", kept_dir = *dir + "/kept";
  for (const std::string& d : {old_dir, new_dir, kept_dir}) std::filesystem::create_directory(d);
  absl::StatusOr<TlsFiles> old_files = GenerateTlsFiles(old_dir);
  ASSERT_TRUE(old_files.ok()) << old_files.status();
  absl::StatusOr<TlsFiles> new_files = GenerateTlsFiles(new_dir);
  ASSERT_TRUE(new_files.ok()) << new_files.status();
  for (const char* name : {"ca.crt", "client.crt", "client.key"}) {
    std::filesystem::copy_file(old_dir + "/" + name, kept_dir + "/" + name);
  }

  EtcdClusterOptions options;
  options.tls = &*old_files;  // served from old_dir's paths, whose contents are replaced below
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  Context ctx;
  etcd::EtcdConfig config = (*cluster)->ClientConfig();
  std::shared_ptr<Backend> backend = MustConnect(config);
  ASSERT_TRUE(backend->Update(ctx, "rotation/before", "1", false).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx, "rotation/", 16);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));

  // The rotation: every file the server and the client read now holds the new CA's material.
  for (const char* name : {"ca.crt", "server.crt", "server.key", "client.crt", "client.key"}) {
    ReplaceFile(new_dir + "/" + name, old_dir + "/" + name);
  }
  ASSERT_TRUE((*cluster)->StopMember(0).ok());
  ASSERT_TRUE((*cluster)->StartMember(0).ok());

  absl::Status after =
      Retry([&] { return backend->Update(ctx, "rotation/after", "2", false); }, 20s);
  ASSERT_TRUE(after.ok()) << after;
  EXPECT_EQ(backend->Get(ctx, "rotation/before")->value_or(""), "1");
  std::map<std::string, std::string> expected = {{"rotation/before", "1"}, {"rotation/after", "2"}};
  ASSERT_TRUE(view.ReadUntil(*watcher, [&](const WatchView& v) { return v.keys == expected; }));
  watcher->Stop();

  etcd::EtcdConfig kept = config;
  kept.trusted_ca_file = kept_dir + "/ca.crt";
  kept.cert_file = kept_dir + "/client.crt";
  kept.key_file = kept_dir + "/client.key";
  kept.request_timeout = 2s;
  std::shared_ptr<Backend> stale = MustConnect(kept);
  EXPECT_FALSE(stale->Update(ctx, "rotation/stale", "3", false).ok());
  stale->Close();
  backend->Close();
  cluster->reset();
  RemoveTree(*dir);
}

}  // namespace
}  // namespace kvstore::testing

// Secrets stay out of the logs: with etcd authentication on, the library's spdlog output (captured
// at debug level) and its error messages never contain the password nor any auth token that etcd
// issued to it. etcd runs with --log-level=debug, which logs every token it issues, so the test
// knows the exact tokens to look for; tokens expire after a second, so several are issued.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "kvstore/etcd/etcd_backend.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tests/support/etcd_fixture.h"
#include "tests/support/store_checks.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;

constexpr char kPassword[] = "Pa55-w0rd-do-not-log";
constexpr char kWrongPassword[] = "Wr0ng-pa55-do-not-log";
constexpr char kPrefix[] = "cilium/state/secret/v1";

// Sends everything logged through spdlog's default logger, from debug up, to a string while alive.
class CapturedLogs {
 public:
  CapturedLogs() : previous_(spdlog::default_logger()), previous_level_(previous_->level()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("captured", sink);
    logger->set_level(spdlog::level::debug);
    logger->flush_on(spdlog::level::debug);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLogs() {
    spdlog::set_default_logger(previous_);
    previous_->set_level(previous_level_);
  }
  std::string Text() {
    spdlog::default_logger()->flush();
    return out_.str();
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  spdlog::level::level_enum previous_level_;
  std::ostringstream out_;
};

// The tokens etcd says it issued, from its debug log.
std::set<std::string> IssuedTokens(const std::string& log_file) {
  std::ifstream in(log_file);
  std::stringstream text;
  text << in.rdbuf();
  std::string all = text.str();
  std::set<std::string> tokens;
  const std::regex token(R"re("token":"([^"]+)")re");
  for (auto it = std::sregex_iterator(all.begin(), all.end(), token); it != std::sregex_iterator();
       ++it) {
    tokens.insert((*it)[1].str());
  }
  return tokens;
}

TEST(SecurityLogsTest, PasswordAndTokensNeverLogged) {
  EtcdClusterOptions options;
  options.extra_args = {"--log-level=debug", "--auth-token-ttl=1"};
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ASSERT_TRUE((*cluster)->EnableAuth(kPassword).ok());
  etcd::EtcdConfig config = (*cluster)->ClientConfig();
  ASSERT_EQ(config.password, kPassword);
  config.lease_ttl = 3s;  // keep-alives every second, each needing a valid token

  CapturedLogs logs;
  std::string messages;  // error and status messages the library hands out
  {
    absl::StatusOr<std::shared_ptr<Backend>> writer = etcd::NewEtcdBackend(config);
    ASSERT_TRUE(writer.ok()) << writer.status();
    absl::StatusOr<std::shared_ptr<Backend>> reader = etcd::NewEtcdBackend(config);
    ASSERT_TRUE(reader.ok()) << reader.status();
    RunningSyncStore sync(*writer, kPrefix);
    WatchingStore watching(*reader, kPrefix);
    absl::StatusOr<std::unique_ptr<Collaborator>> collaborator =
        Collaborator::Join(*reader, std::string(kPrefix) + "-shared", "c/");
    ASSERT_TRUE(collaborator.ok()) << collaborator.status();

    KeyMap want;
    for (int round = 0; round < 3; ++round) {
      for (int i = 0; i < 20; ++i) {
        std::string name = absl::StrCat("k", i);
        ASSERT_TRUE(sync.Upsert(name, absl::StrCat("v", round)).ok());
        want[name] = absl::StrCat("v", round);
      }
      ASSERT_TRUE((*collaborator)->Publish(absl::StrCat("c/", round), "x").ok());
      // Tokens expire after a second unused: the next calls must log in again.
      std::this_thread::sleep_for(1500ms);
    }
    EXPECT_EQ(PollUntil([&] { return watching.Compare(want); }, 20s), "");
    // A lost lease and a compaction: more requests, and warnings about them.
    absl::StatusOr<std::map<std::string, int64_t>> leases = ReadLeases(config, kPrefix);
    ASSERT_TRUE(leases.ok()) << leases.status();
    ASSERT_TRUE((*cluster)->RevokeLease(leases->at("k0")).ok());
    ASSERT_TRUE((*cluster)->Compact().ok());
    EXPECT_EQ(PollUntil([&] { return watching.Compare(want); }, 20s), "");
    messages += (*writer)->Status().message + "\n" + (*reader)->Status().message + "\n";

    // A client with a wrong password: its failures are logged by the SyncStore and returned.
    etcd::EtcdConfig wrong = config;
    wrong.password = kWrongPassword;
    absl::StatusOr<std::shared_ptr<Backend>> intruder = etcd::NewEtcdBackend(wrong);
    ASSERT_TRUE(intruder.ok());
    absl::Status refused = (*intruder)->Update(Context(), "cilium/x", "1", true);
    EXPECT_FALSE(refused.ok());
    messages += refused.ToString() + "\n" + (*intruder)->Status().message + "\n";
    {
      RunningSyncStore failing(*intruder, std::string(kPrefix) + "-refused");
      ASSERT_TRUE(failing.Upsert("k", "v").ok());
      std::this_thread::sleep_for(1s);  // a few failed writes and their warnings
    }
    (*intruder)->Close();
    (*writer)->Close();
    (*reader)->Close();
  }

  const std::string text = logs.Text();
  if (std::getenv("KVSTORE_DUMP_LOGS")) std::printf("%s\n", text.c_str());
  const std::set<std::string> tokens = IssuedTokens((*cluster)->dir() + "/m0.log");
  std::printf("[ figures  ] %zu bytes of library logs captured; %zu tokens issued by etcd\n",
              text.size(), tokens.size());
  ASSERT_GE(tokens.size(), 3u) << "etcd's debug log shows too few logins to check anything";
  ASSERT_NE(text.find("Failed"), std::string::npos) << "no failure was logged:\n" << text;
  for (const std::string& haystack : {text, messages}) {
    EXPECT_EQ(haystack.find(kPassword), std::string::npos) << "password leaked:\n" << haystack;
    EXPECT_EQ(haystack.find(kWrongPassword), std::string::npos) << "wrong password leaked:\n"
                                                                << haystack;
    for (const std::string& token : tokens) {
      EXPECT_EQ(haystack.find(token), std::string::npos) << "token " << token << " leaked:\n"
                                                         << haystack;
    }
  }
}

}  // namespace
}  // namespace kvstore::testing

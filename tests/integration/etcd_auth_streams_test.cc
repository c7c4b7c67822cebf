// Credentials on the streams (issue 23, section 2): with authentication on, the watch and
// keep-alive streams must renew their token as the unary calls do. Real etcd members, started by
// the fixture: restarted with kill -9 (which invalidates every simple token), with tokens that
// expire after a few seconds (simple and JWT), and with a permission taken away (a watch that
// cannot resume must say so).
//
// KVSTORE_AUTH_SOAK_SECONDS sets how long the expiring-token tests keep writing and checking
// (default 15; `make soak` runs them for 60).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvstore/backend_metrics.h"
#include "prometheus/registry.h"
#include "tests/integration/etcd_test_util.h"
#include "tests/support/metrics_reader.h"

namespace kvstore::testing {
namespace {

using namespace std::chrono_literals;

std::chrono::seconds SoakDuration() {
  const char* text = std::getenv("KVSTORE_AUTH_SOAK_SECONDS");
  if (text == nullptr) return 15s;
  return std::chrono::seconds(std::max(1, std::atoi(text)));
}

std::unique_ptr<EtcdCluster> StartWithAuth(std::vector<std::string> extra_args) {
  EtcdClusterOptions options;
  options.extra_args = std::move(extra_args);
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(options);
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  if (!cluster.ok()) return nullptr;
  absl::Status enabled = (*cluster)->EnableAuth("s3cret");
  EXPECT_TRUE(enabled.ok()) << enabled;
  return enabled.ok() ? std::move(*cluster) : nullptr;
}

// A JWT signing key pair made with openssl in `dir`, and etcd's flag that uses it with `ttl`.
absl::StatusOr<std::string> JwtFlag(const std::string& dir, const std::string& ttl) {
  const std::string priv = dir + "/jwt.key", pub = dir + "/jwt.pub";
  CommandResult made = RunCommand({"openssl", "genrsa", "-out", priv, "2048"});
  if (made.exit_code != 0) return absl::InternalError("openssl genrsa: " + made.output);
  made = RunCommand({"openssl", "rsa", "-in", priv, "-pubout", "-out", pub});
  if (made.exit_code != 0) return absl::InternalError("openssl rsa: " + made.output);
  return absl::StrCat("--auth-token=jwt,pub-key=", pub, ",priv-key=", priv,
                      ",sign-method=RS256,ttl=", ttl);
}

// etcd with kill -9 and a restart in between invalidates every simple token; the client's watch
// resumes (a key written after the restart arrives), and its session lease is kept alive.
TEST(EtcdAuthStreamsTest, WatchAndLeaseRecoverAfterRestartUnderAuth) {
  std::unique_ptr<EtcdCluster> cluster = StartWithAuth({});
  ASSERT_NE(cluster, nullptr);
  etcd::EtcdConfig config = cluster->ClientConfig();
  config.lease_ttl = 5s;
  std::shared_ptr<Backend> backend = MustConnect(config);
  std::shared_ptr<Backend> other = MustConnect(cluster->ClientConfig());
  ASSERT_NE(backend, nullptr);
  ASSERT_NE(other, nullptr);
  Context ctx;
  ASSERT_TRUE(backend->Update(ctx, "restart/own", "1", /*lease=*/true).ok());
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx, "restart/", 64);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));

  ASSERT_TRUE(cluster->KillMember(0).ok());
  // Down for a while, as when a person restarts it: the client reconnects to the new process,
  // which knows none of the tokens the old one issued.
  std::this_thread::sleep_for(2s);
  ASSERT_TRUE(cluster->StartMember(0).ok());
  ASSERT_TRUE(Retry([&] { return other->Update(ctx, "restart/later", "2", false); }).ok());
  EXPECT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) {
    return v.keys.count("restart/later") == 1;
  })) << "the watch did not resume after the restart";

  // Twice the lease's TTL after the restart (which starts leases afresh): still there only if
  // the keep-alives went on.
  const auto until = std::chrono::steady_clock::now() + 2 * config.lease_ttl;
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(500ms);
    absl::StatusOr<std::optional<std::string>> own = other->Get(ctx, "restart/own");
    ASSERT_TRUE(own.ok()) << own.status();
    ASSERT_TRUE(own->has_value()) << "the session lease expired after the restart";
  }
  // And the watch still delivers.
  ASSERT_TRUE(other->Update(ctx, "restart/last", "3", false).ok());
  EXPECT_TRUE(view.ReadUntil(*watcher,
                             [](const WatchView& v) { return v.keys.count("restart/last") == 1; }));
  watcher->Stop();
}

// Tokens that expire after a few seconds: the backend itself stays idle (only its streams run),
// so its token expires; a watcher added later subscribes on the stream opened with it. Every key
// written from outside arrives at every watcher, in order, and the session lease stays.
void CheckStreamsSurviveExpiringTokens(EtcdCluster& cluster) {
  etcd::EtcdConfig config = cluster.ClientConfig();
  config.lease_ttl = 5s;
  std::shared_ptr<Backend> backend = MustConnect(config);
  std::shared_ptr<Backend> writer = MustConnect(cluster.ClientConfig());
  ASSERT_NE(backend, nullptr);
  ASSERT_NE(writer, nullptr);
  Context ctx;
  ASSERT_TRUE(backend->Update(ctx, "ttl/own", "1", /*lease=*/true).ok());
  struct Watch {
    std::shared_ptr<Watcher> watcher;
    WatchView view;
  };
  std::vector<Watch> watches;
  auto add_watch = [&] {
    Watch w{backend->ListAndWatch(ctx, "ttl/", 1024), {}};
    ASSERT_TRUE(w.view.ReadUntil(*w.watcher, [](const WatchView& v) { return v.list_done; }));
    watches.push_back(std::move(w));
  };
  add_watch();
  const auto duration = SoakDuration();
  const auto start = std::chrono::steady_clock::now();
  int written = 0;
  auto next_watch = start + 7s;  // past the token's TTL of 5 s
  while (std::chrono::steady_clock::now() - start < duration) {
    const std::string key = absl::StrCat("ttl/k", written);
    ASSERT_TRUE(writer->Update(ctx, key, std::to_string(written), false).ok());
    ++written;
    if (std::chrono::steady_clock::now() >= next_watch) {
      add_watch();
      next_watch += 7s;
    }
    for (Watch& w : watches) {
      ASSERT_TRUE(
          w.view.ReadUntil(*w.watcher, [&](const WatchView& v) { return v.keys.count(key) == 1; }))
          << "watcher " << (&w - watches.data()) << " of " << watches.size() << " missed " << key;
    }
    absl::StatusOr<std::optional<std::string>> own = writer->Get(ctx, "ttl/own");
    ASSERT_TRUE(own.ok() && own->has_value()) << "the session lease was lost";
    std::this_thread::sleep_for(1s);
  }
  EXPECT_GE(watches.size(), 2u);
  for (Watch& w : watches) {
    // Nothing lost, nothing twice: each key once, in the order written.
    std::vector<std::string> seen;
    for (const KeyValueEvent& ev : w.view.events) {
      if (ev.type == EventType::kCreate && ev.key != "ttl/own") seen.push_back(ev.key);
    }
    for (size_t i = 1; i < seen.size(); ++i) {
      EXPECT_NE(seen[i - 1], seen[i]) << "delivered twice";
    }
    EXPECT_EQ(w.view.keys.size(), static_cast<size_t>(written) + 1);
    w.watcher->Stop();
  }
  {
    const BackendStatus backend_status = backend->Status();
    EXPECT_EQ(backend_status.state, BackendState::kOk) << backend_status.message;
  }
}

TEST(EtcdAuthStreamsTest, SimpleTokensExpiring) {
  std::unique_ptr<EtcdCluster> cluster = StartWithAuth({"--auth-token-ttl=5"});
  ASSERT_NE(cluster, nullptr);
  CheckStreamsSurviveExpiringTokens(*cluster);
}

TEST(EtcdAuthStreamsTest, JwtTokensExpiring) {
  absl::StatusOr<std::string> dir = MakeTempDir("jwt");
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::string> flag = JwtFlag(*dir, "5s");
  ASSERT_TRUE(flag.ok()) << flag.status();
  std::unique_ptr<EtcdCluster> cluster = StartWithAuth({*flag});
  ASSERT_NE(cluster, nullptr);
  CheckStreamsSurviveExpiringTokens(*cluster);
  cluster.reset();
  RemoveTree(*dir);
}

// A user whose read permission is taken away: once its watch has to be subscribed again (here
// after a restart), etcd refuses it even with a fresh token. The watcher cannot resume, and says
// so: in the backend's status, in cilium_kvstore_watchers_stalled, and in the log. Given the
// permission back, it resumes.
TEST(EtcdAuthStreamsTest, WatchThatCannotResumeSaysSo) {
  std::unique_ptr<EtcdCluster> cluster = StartWithAuth({});
  ASSERT_NE(cluster, nullptr);
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"role", "add", "reader"},
           {"role", "grant-permission", "reader", "readwrite", "perm/", "--prefix=true"},
           {"user", "add", "alice", "--new-user-password=alicepw"},
           {"user", "grant-role", "alice", "reader"}}) {
    absl::StatusOr<std::string> out = cluster->Etcdctl(args);
    ASSERT_TRUE(out.ok()) << out.status();
  }
  etcd::EtcdConfig config = cluster->ClientConfig();
  config.username = "alice";
  config.password = "alicepw";
  prometheus::Registry registry;
  config.metrics = std::make_shared<BackendMetrics>(registry);
  std::shared_ptr<Backend> backend = MustConnect(config);
  std::shared_ptr<Backend> root = MustConnect(cluster->ClientConfig());
  ASSERT_NE(backend, nullptr);
  Context ctx;
  std::shared_ptr<Watcher> watcher = backend->ListAndWatch(ctx, "perm/", 64);
  WatchView view;
  ASSERT_TRUE(view.ReadUntil(*watcher, [](const WatchView& v) { return v.list_done; }));

  absl::StatusOr<std::string> revoked =
      cluster->Etcdctl({"role", "revoke-permission", "reader", "perm/", "--prefix=true"});
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  ASSERT_TRUE(cluster->KillMember(0).ok());
  ASSERT_TRUE(cluster->StartMember(0).ok());

  auto stalled_gauge = [&] {
    return ReadMetric(registry, "cilium_kvstore_watchers_stalled", {{"scope", "perm/"}})
               .value_or(0) == 1;
  };
  EXPECT_TRUE(Eventually([&] {
    BackendStatus status = backend->Status();
    return status.state == BackendState::kWarning &&
           status.message.find("perm/") != std::string::npos &&
           status.message.find("cannot resume") != std::string::npos;
  })) << backend->Status().message;
  EXPECT_TRUE(Eventually(stalled_gauge));

  absl::StatusOr<std::string> granted = cluster->Etcdctl(
      {"role", "grant-permission", "reader", "readwrite", "perm/", "--prefix=true"});
  ASSERT_TRUE(granted.ok()) << granted.status();
  ASSERT_TRUE(Retry([&] { return root->Update(ctx, "perm/back", "1", false); }).ok());
  EXPECT_TRUE(view.ReadUntil(
      *watcher, [](const WatchView& v) { return v.keys.count("perm/back") == 1; }, 60s));
  EXPECT_TRUE(Eventually([&] { return backend->Status().state == BackendState::kOk; }))
      << backend->Status().message;
  EXPECT_FALSE(stalled_gauge());
  watcher->Stop();
}

}  // namespace
}  // namespace kvstore::testing

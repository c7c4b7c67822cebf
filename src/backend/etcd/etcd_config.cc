// EtcdConfig::FromFile: the etcd client configuration file Cilium users write (the YAML format of
// etcd's Go client: go.etcd.io/etcd/client/v3/yaml, and Cilium's pkg/kvstore/etcd.go on top of it,
// which also reads the older "ca-file").
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "kvstore/etcd/etcd_backend.h"
#include "kvstore/mutex.h"
#include "spdlog/spdlog.h"

namespace kvstore::etcd {
namespace {

absl::Status Invalid(const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("etcd config file '", path, "': ", why));
}

// Keys of etcd's Go client configuration that this client has no use for. They are accepted, and
// a warning says that they have no effect.
constexpr const char* kIgnoredKeys[] = {"auto-sync-interval",       "reject-old-cluster",
                                        "permit-without-stream",    "token",
                                        "max-unary-retries",        "backoff-wait-between",
                                        "backoff-jitter-fraction",  "backoff-exponent",
                                        "backoff-max-wait-between", "maxcallsendmsgsize",
                                        "maxcallrecvmsgsize"};

// Warns about `key` of the file at `path` once per process: a configuration re-read (a mesh
// following its config directory) does not repeat it.
void WarnOnce(const std::string& path, const std::string& key, const std::string& message) {
  static Mutex mu;
  static std::set<std::pair<std::string, std::string>> warned ABSL_GUARDED_BY(mu);
  {
    MutexLock guard(mu);
    if (!warned.emplace(path, key).second) return;
  }
  spdlog::warn("etcd config file '{}': {}", path, message);
}

// The file's fields by what they set in the configuration.
class FieldReader {
 public:
  FieldReader(const std::string& path, EtcdConfig& config) : path_(path), config_(config) {}

  absl::Status Read(const std::string& key, const YAML::Node& value) {
    if (key == "endpoints") return Endpoints(value);
    if (key == "trusted-ca-file") return String(key, value, config_.trusted_ca_file);
    if (key == "ca-file") return String(key, value, ca_file_);
    if (key == "cert-file") return String(key, value, config_.cert_file);
    if (key == "key-file") return String(key, value, config_.key_file);
    if (key == "username") return String(key, value, config_.username);
    if (key == "password") return String(key, value, config_.password);
    if (key == "insecure-transport") return Bool(key, value, config_.insecure_transport);
    if (key == "insecure-skip-tls-verify") {
      return Bool(key, value, config_.insecure_skip_tls_verify);
    }
    if (key == "dial-timeout") return Duration(key, value, config_.dial_timeout);
    if (key == "dial-keep-alive-time") return Duration(key, value, config_.keepalive_time);
    if (key == "dial-keep-alive-timeout") return Duration(key, value, config_.keepalive_timeout);
    // Cilium's kvstore-opt names (matched in lower case, as every key).
    if (key == "etcd.qps") return Rate("etcd.qps", value, config_.qps);
    if (key == "etcd.bootstrapqps") return Rate("etcd.bootstrapQps", value, config_.bootstrap_qps);
    if (key == "etcd.maxinflight") {
      double limit = 0;
      if (absl::Status s = Rate("etcd.maxInflight", value, limit); !s.ok()) return s;
      if (limit != static_cast<double>(static_cast<size_t>(limit))) {
        return Invalid(path_, "'etcd.maxInflight' must be a whole number");
      }
      config_.max_inflight = static_cast<size_t>(limit);
      return absl::OkStatus();
    }
    for (const char* ignored : kIgnoredKeys) {
      if (key == ignored) {
        WarnOnce(path_, key,
                 absl::StrCat("'", key, "' is not supported by this client and has no effect"));
        return absl::OkStatus();
      }
    }
    WarnOnce(path_, key, absl::StrCat("unknown key '", key, "' is ignored"));
    return absl::OkStatus();
  }

  // What the fields mean together: "ca-file" is the CA when "trusted-ca-file" is not given, as
  // in Cilium.
  void Finish() {
    if (config_.trusted_ca_file.empty()) config_.trusted_ca_file = ca_file_;
  }

 private:
  absl::Status Endpoints(const YAML::Node& node) {
    if (node.IsNull()) return absl::OkStatus();
    if (node.IsScalar()) {
      config_.endpoints.push_back(node.as<std::string>());
      return absl::OkStatus();
    }
    if (!node.IsSequence()) return Invalid(path_, "'endpoints' must be a list of strings");
    for (const YAML::Node& e : node) {
      if (!e.IsScalar()) return Invalid(path_, "'endpoints' must be a list of strings");
      config_.endpoints.push_back(e.as<std::string>());
    }
    return absl::OkStatus();
  }

  absl::Status String(const std::string& key, const YAML::Node& node, std::string& target) {
    if (node.IsNull()) return absl::OkStatus();
    if (!node.IsScalar()) return Invalid(path_, absl::StrCat("'", key, "' must be a string"));
    target = node.as<std::string>();
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& key, const YAML::Node& node, bool& target) {
    if (node.IsNull()) return absl::OkStatus();
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
      return Invalid(path_, absl::StrCat("'", key, "' must be true or false"));
    }
    target = value;
    return absl::OkStatus();
  }

  // A limit: a finite number >= 0 (0: none), as a number or a string holding one. Anything else,
  // an empty value included, is an error: Cilium once read an empty etcd.qps as 0, which is "no
  // limit", and ran without one for years (cilium/cilium#15742).
  absl::Status Rate(const std::string& key, const YAML::Node& node, double& target) {
    const std::string text = node.IsScalar() ? node.as<std::string>() : std::string();
    double value = 0;
    if (!node.IsScalar() || !absl::SimpleAtod(text, &value) || !std::isfinite(value) || value < 0) {
      return Invalid(path_, absl::StrCat("'", key, "': '", text,
                                         "' is not a limit (a number >= 0; 0 means no limit)"));
    }
    target = value;
    return absl::OkStatus();
  }

  // A duration as etcd's Go client reads it (a number: nanoseconds), or as text with units
  // ("5s", "1m30s", "500ms").
  absl::Status Duration(const std::string& key, const YAML::Node& node,
                        std::chrono::milliseconds& target) {
    if (node.IsNull()) return absl::OkStatus();
    if (!node.IsScalar()) return Invalid(path_, absl::StrCat("'", key, "' must be a duration"));
    const std::string text = node.as<std::string>();
    absl::Duration d;
    int64_t nanoseconds = 0;
    if (absl::SimpleAtoi(text, &nanoseconds)) {
      d = absl::Nanoseconds(nanoseconds);
    } else if (!absl::ParseDuration(text, &d) || d == absl::InfiniteDuration()) {
      return Invalid(path_, absl::StrCat("'", key, "': '", text,
                                         "' is not a duration (such as 5s, 1m30s or 500ms)"));
    }
    if (d < absl::Milliseconds(1)) {
      return Invalid(path_, absl::StrCat("'", key, "': ", text,
                                         " is below 1 ms (a bare number is nanoseconds, as in "
                                         "etcd's client; give units, such as 5s)"));
    }
    target = std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
    return absl::OkStatus();
  }

  const std::string& path_;
  EtcdConfig& config_;
  std::string ca_file_;
};

}  // namespace

absl::StatusOr<EtcdConfig> EtcdConfig::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Invalid(path, "cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    return Invalid(path, absl::StrCat("not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) return Invalid(path, "expected a mapping of etcd options");

  EtcdConfig config;
  FieldReader reader(path, config);
  try {
    for (const auto& field : root) {
      if (!field.first.IsScalar()) return Invalid(path, "keys must be strings");
      // etcd's Go client matches keys without regard to case.
      const std::string key = absl::AsciiStrToLower(field.first.as<std::string>());
      if (absl::Status s = reader.Read(key, field.second); !s.ok()) return s;
    }
  } catch (const YAML::Exception& e) {
    return Invalid(path, e.what());
  }
  reader.Finish();
  if (config.endpoints.empty()) return Invalid(path, "no 'endpoints' given");
  if (config.cert_file.empty() != config.key_file.empty()) {
    return Invalid(path, "'cert-file' and 'key-file' must be given together");
  }
  return config;
}

}  // namespace kvstore::etcd

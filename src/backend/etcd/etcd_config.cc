// EtcdConfig::FromFile: Cilium's etcd configuration file (the etcd client's YAML format).
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kvstore/etcd/etcd_backend.h"

namespace kvstore::etcd {
namespace {

absl::Status Invalid(const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("etcd config file '", path, "': ", why));
}

absl::StatusOr<std::string> ScalarField(const YAML::Node& root, const std::string& path,
                                        const char* name) {
  YAML::Node node = root[name];
  if (!node || node.IsNull()) return std::string();
  if (!node.IsScalar()) return Invalid(path, absl::StrCat("'", name, "' must be a string"));
  return node.as<std::string>();
}

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
  try {
    YAML::Node endpoints = root["endpoints"];
    if (endpoints && endpoints.IsSequence()) {
      for (const YAML::Node& e : endpoints) {
        if (!e.IsScalar()) return Invalid(path, "'endpoints' must be a list of strings");
        config.endpoints.push_back(e.as<std::string>());
      }
    } else if (endpoints && endpoints.IsScalar()) {
      config.endpoints.push_back(endpoints.as<std::string>());
    } else if (endpoints && !endpoints.IsNull()) {
      return Invalid(path, "'endpoints' must be a list of strings");
    }
    struct Field {
      const char* name;
      std::string* target;
    } fields[] = {
        {"trusted-ca-file", &config.trusted_ca_file},
        {"cert-file", &config.cert_file},
        {"key-file", &config.key_file},
        {"username", &config.username},
        {"password", &config.password},
    };
    for (const Field& field : fields) {
      absl::StatusOr<std::string> value = ScalarField(root, path, field.name);
      if (!value.ok()) return value.status();
      *field.target = *value;
    }
  } catch (const YAML::Exception& e) {
    return Invalid(path, e.what());
  }
  if (config.endpoints.empty()) return Invalid(path, "no 'endpoints' given");
  if (config.cert_file.empty() != config.key_file.empty()) {
    return Invalid(path, "'cert-file' and 'key-file' must be given together");
  }
  return config;
}

}  // namespace kvstore::etcd

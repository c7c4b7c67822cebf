// Writes the input to a file and parses it with EtcdConfig::FromFile: whatever the bytes, it must
// return a status with a message, never crash, abort or throw.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "fuzz/fuzz_input.h"
#include "kvstore/etcd/etcd_backend.h"

namespace kvstore::fuzz {
namespace {

// One file per process, rewritten for every input (parallel fuzzing jobs use separate files).
const std::string& ConfigPath() {
  static const std::string* path =
      new std::string("/tmp/kvstore_etcd_config_fuzzer." + std::to_string(::getpid()) + ".yaml");
  return *path;
}

void RunOne(const uint8_t* data, size_t size) {
  const std::string& path = ConfigPath();
  std::FILE* file = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(file != nullptr, "cannot create " + path);
  FUZZ_CHECK(std::fwrite(data, 1, size, file) == size, "cannot write " + path);
  FUZZ_CHECK(std::fclose(file) == 0, "cannot write " + path);

  absl::StatusOr<etcd::EtcdConfig> config;
  try {
    config = etcd::EtcdConfig::FromFile(path);
  } catch (...) {
    FUZZ_CHECK(false, "FromFile threw an exception");
  }
  if (!config.ok()) {
    FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
  }
}

}  // namespace
}  // namespace kvstore::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvstore::fuzz::RunOne(data, size);
  return 0;
}

#include "core/write_checks.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kvstore/backend.h"

namespace kvstore::internal {

std::string DescribeKey(std::string_view key) {
  constexpr size_t kMaxShown = 128;
  const std::string_view head = key.substr(0, kMaxShown);
  std::string shown = absl::CHexEscape(absl::string_view(head.data(), head.size()));
  if (key.size() > kMaxShown) absl::StrAppend(&shown, "...");
  return absl::StrCat("\"", shown, "\"");
}

absl::Status CheckKeyNotEmpty(std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("key must not be empty");
  return absl::OkStatus();
}

absl::Status CheckKey(std::string_view key) {
  if (absl::Status status = CheckKeyNotEmpty(key); !status.ok()) return status;
  if (key.size() > kMaxValueBytes) {
    return absl::ResourceExhaustedError(absl::StrCat("key ", DescribeKey(key), " of ", key.size(),
                                                     " bytes exceeds the request limit of ",
                                                     kMaxValueBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckWrite(std::string_view key, std::string_view value) {
  if (absl::Status status = CheckKey(key); !status.ok()) return status;
  if (value.size() > kMaxValueBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("value of key ", DescribeKey(key), " is ", value.size(),
                     " bytes, more than the limit of ", kMaxValueBytes, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace kvstore::internal

// The checks both backends make before a write, so that they refuse the same input with the same
// error, before anything is sent or stored.
#ifndef KVSTORE_CORE_WRITE_CHECKS_H_
#define KVSTORE_CORE_WRITE_CHECKS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace kvstore::internal {

// `key` for an error message: quoted, non-printable bytes escaped, shortened when long (keys may
// hold any bytes).
std::string DescribeKey(std::string_view key);

// InvalidArgument for an empty key; ResourceExhausted for a key longer than kMaxValueBytes (it
// could never fit in a request).
absl::Status CheckKey(std::string_view key);

// CheckKey, and ResourceExhausted for a value longer than kMaxValueBytes.
absl::Status CheckWrite(std::string_view key, std::string_view value);

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_WRITE_CHECKS_H_

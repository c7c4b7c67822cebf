// The checks both backends make before a write, so that they refuse the same input with the same
// error, before anything is sent or stored.
#ifndef KVSTORE_CORE_WRITE_CHECKS_H_
#define KVSTORE_CORE_WRITE_CHECKS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "kvstore/backend.h"

namespace kvstore::internal {

// `key` for an error message: quoted, non-printable bytes escaped, shortened when long (keys may
// hold any bytes).
std::string DescribeKey(std::string_view key);

// InvalidArgument for an empty key: what reads and deletes check.
absl::Status CheckKeyNotEmpty(std::string_view key);

// CheckKeyNotEmpty; ResourceExhausted for a key longer than kMaxValueBytes (it
// could never fit in a request).
absl::Status CheckKey(std::string_view key);

// A key no write accepts (CheckKey refuses it) cannot exist: reading it finds nothing and
// deleting it succeeds, without asking the server (whose request limit it would exceed).
inline bool CannotExist(std::string_view key) { return key.size() > kMaxValueBytes; }

// CheckKey, and ResourceExhausted for a value longer than kMaxValueBytes.
absl::Status CheckWrite(std::string_view key, std::string_view value);

}  // namespace kvstore::internal

#endif  // KVSTORE_CORE_WRITE_CHECKS_H_

// What every fuzzer here shares: reading the input front to back (so that seed files are easy to
// write by hand) and failing loudly when an invariant breaks.
#ifndef KVSTORE_FUZZ_FUZZ_INPUT_H_
#define KVSTORE_FUZZ_FUZZ_INPUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace kvstore::fuzz {

// Reads bytes in order; once the input is exhausted every read returns zeros (empty strings), so
// decoders never need to check for the end except to stop their loop.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool Empty() const { return pos_ >= size_; }

  uint8_t Byte() { return Empty() ? 0 : data_[pos_++]; }

  // A big-endian 16-bit number.
  uint16_t Short() {
    uint16_t high = Byte();
    return static_cast<uint16_t>(high << 8 | Byte());
  }

  // The next `n` bytes, or what is left of the input.
  std::string Raw(size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::string out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }

  // A string of at most `max_len` bytes: one length byte (taken modulo max_len + 1), then that
  // many bytes, or what is left of the input.
  std::string Bytes(size_t max_len) { return Raw(Byte() % (max_len + 1)); }

 private:
  const uint8_t* const data_;
  const size_t size_;
  size_t pos_ = 0;
};

// Shows `bytes` with non-printable bytes escaped, for failure messages.
inline std::string Printable(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

[[noreturn]] inline void FailCheck(const char* file, int line, const char* condition,
                                   const std::string& message) {
  std::fprintf(stderr, "%s:%d: invariant broken: %s\n  %s\n", file, line, condition,
               message.c_str());
  std::abort();
}

}  // namespace kvstore::fuzz

// Aborts (which libFuzzer reports as a crash, saving the input) when `condition` is false.
// `message` (a std::string expression) is only evaluated then.
#define FUZZ_CHECK(condition, message)                                       \
  do {                                                                       \
    if (!(condition)) {                                                      \
      ::kvstore::fuzz::FailCheck(__FILE__, __LINE__, #condition, (message)); \
    }                                                                        \
  } while (false)

#endif  // KVSTORE_FUZZ_FUZZ_INPUT_H_

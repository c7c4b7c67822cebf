#include "core/guarded.h"

#include <atomic>
#include <exception>

#include "spdlog/spdlog.h"

namespace kvstore::internal {
namespace {

std::atomic<uint64_t> caught{0};

// Logging itself may throw (an allocation); then the exception is only counted.
void Report(const char* where, const char* what) noexcept {
  caught.fetch_add(1, std::memory_order_relaxed);
  try {
    spdlog::error("exception escaped {}: {}", where, what);
  } catch (...) {
  }
}

}  // namespace

void ReportCurrentException(const char* where) noexcept {
  try {
    throw;
  } catch (const std::exception& error) {
    Report(where, error.what());
  } catch (...) {
    Report(where, "an exception not derived from std::exception");
  }
}

void RunGuarded(const char* where, const std::function<void()>& fn) noexcept {
  try {
    fn();
  } catch (...) {
    ReportCurrentException(where);
  }
}

uint64_t CaughtExceptions() { return caught.load(std::memory_order_relaxed); }

}  // namespace kvstore::internal

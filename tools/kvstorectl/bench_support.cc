#include "bench_support.h"

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <iostream>

#include "kvstore/context.h"
#include "kvstore/mutex.h"

namespace kvstorectl::bench {
namespace {

double Seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

double CpuSeconds(const rusage& usage) { return Seconds(usage.ru_utime) + Seconds(usage.ru_stime); }

rusage Usage() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage;
}

std::string Format(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

}  // namespace

MeasuredPhase::MeasuredPhase() : start_usage_(Usage()) {
  start_ = std::chrono::steady_clock::now();
}

Measurement MeasuredPhase::Finish() {
  auto end = std::chrono::steady_clock::now();
  rusage end_usage = Usage();
  Measurement m;
  m.seconds = std::chrono::duration<double>(end - start_).count();
  m.client_cpu_seconds = CpuSeconds(end_usage) - CpuSeconds(start_usage_);
  m.maxrss_kb = end_usage.ru_maxrss;  // Linux reports kilobytes
  return m;
}

std::string ResultLine(std::string_view workload, int64_t keys, const Measurement& m,
                       const Fields& extra) {
  // A phase always takes some time, but guard the divisions anyway.
  double seconds = m.seconds > 0 ? m.seconds : 1e-9;
  double ops = keys > 0 ? static_cast<double>(keys) : 1.0;
  std::string line = "workload=" + std::string(workload);
  line += " keys=" + std::to_string(keys);
  line += " seconds=" + Format("%.6f", m.seconds);
  line += " ops_per_s=" + Format("%.0f", static_cast<double>(keys) / seconds);
  line += " client_cpu_s=" + Format("%.3f", m.client_cpu_seconds);
  line += " cpu_us_per_op=" + Format("%.2f", m.client_cpu_seconds * 1e6 / ops);
  line += " maxrss_kb=" + std::to_string(m.maxrss_kb);
  for (const auto& [key, value] : extra) line += " " + key + "=" + value;
  return line;
}

Progress::Progress(bool enabled, std::string label, std::function<std::string()> status)
    : label_(std::move(label)), status_(std::move(status)) {
  if (enabled) thread_ = std::thread([this] { Loop(); });
}

Progress::~Progress() { Stop(); }

void Progress::Stop() {
  {
    kvstore::MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Progress::Loop() {
  size_t last_width = 0;
  kvstore::MutexLock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(200),
                       [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; })) {
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string line = label_ + ": " + status_() + ", " + Format("%.1f s", elapsed);
    // Pad over the remains of a longer previous line.
    size_t width = line.size();
    if (width < last_width) line.append(last_width - width, ' ');
    last_width = width;
    std::cerr << "\r" << line << std::flush;
  }
  if (last_width > 0) std::cerr << "\r" << std::string(last_width, ' ') << "\r" << std::flush;
}

bool ShowProgress(bool quiet) { return !quiet && isatty(STDERR_FILENO) != 0; }

std::string KeyName(int64_t index) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "k%08" PRId64, index);
  return buffer;
}

std::string CollaboratorKeyName(int collaborator, int64_t index) {
  char buffer[48];
  std::snprintf(buffer, sizeof(buffer), "c%03d/k%08" PRId64, collaborator, index);
  return buffer;
}

std::string ValueFor(std::string_view name, size_t size) {
  std::string value;
  value.reserve(std::max<size_t>(size, 32 + name.size()));
  value += "{\"name\":\"";
  value += name;
  value += "\",\"data\":\"";
  // The data is the alphabet repeated, appended a run at a time: it is written and checked on
  // every key of a workload, so a character at a time would show in its CPU figures.
  static constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz";
  const size_t closing = 2;  // "}
  size_t fill = size > value.size() + closing ? size - value.size() - closing : 0;
  while (fill > 0) {
    std::string_view run = kAlphabet.substr(0, std::min(fill, kAlphabet.size()));
    value += run;
    fill -= run.size();
  }
  value += "\"}";
  value.resize(size);
  return value;
}

absl::StatusOr<std::shared_ptr<kvstore::Backend>> OpenBackend(const BackendFlags& flags,
                                                              size_t list_page_size) {
  if (!flags.UsesEtcd()) return flags.Open();
  auto config = flags.EtcdConfig();
  if (!config.ok()) return config.status();
  config->list_page_size = list_page_size;
  return kvstore::etcd::NewEtcdBackend(*std::move(config));
}

void Signal::Notify() {
  {
    kvstore::MutexLock lock(mu_);
    ++generation_;
  }
  cv_.notify_all();
}

bool Signal::WaitUntil(const kvstore::Context& ctx, const std::function<bool()>& done,
                       std::chrono::milliseconds poll) {
  kvstore::ScopedContextCallback wake(ctx, [this] { Notify(); });
  kvstore::MutexLock lock(mu_);
  while (true) {
    const uint64_t seen = generation_;
    // `done` may take locks of the stores: never call it with mu_ held.
    lock.unlock();
    bool finished = done();
    lock.lock();
    if (finished) return true;
    if (ctx.Done()) return false;
    cv_.wait_for(lock, poll,
                 [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return generation_ != seen; });
  }
}

}  // namespace kvstorectl::bench

#include "agent_mesh_support.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kvstore/mutex.h"
#include "spdlog/sinks/sink.h"
#include "spdlog/spdlog.h"

namespace kvstorectl {

void Announce(const std::string& message) {
  auto logger = spdlog::default_logger();
  if (!logger || logger->level() == spdlog::level::off) return;
  if (logger->should_log(spdlog::level::info)) {
    logger->info(message);
    return;
  }
  // Straight to the sinks: they format the line as every other one (text or JSON).
  spdlog::details::log_msg msg(logger->name(), spdlog::level::info, message);
  for (auto& sink : logger->sinks()) {
    sink->log(msg);
    sink->flush();
  }
}

absl::StatusOr<std::string> NormalizeListenAddress(std::string_view listen) {
  std::string_view host;
  std::string_view port = listen;
  if (listen.starts_with('[')) {  // [ipv6]:port
    size_t close = listen.find("]:");
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError("invalid listen address \"" + std::string(listen) +
                                        "\": expected [IPv6]:PORT");
    }
    host = listen.substr(0, close + 1);
    port = listen.substr(close + 2);
  } else if (size_t colon = listen.rfind(':'); colon != std::string_view::npos) {
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return absl::InvalidArgumentError("invalid listen address \"" + std::string(listen) +
                                        "\": write IPv6 hosts as [ADDRESS]:PORT");
    }
  }
  int number = -1;
  auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() || number < 0 ||
      number > 65535) {
    return absl::InvalidArgumentError("invalid listen address \"" + std::string(listen) +
                                      "\": expected HOST:PORT with a port from 0 to 65535");
  }
  if (host.empty()) host = "127.0.0.1";
  return std::string(host) + ":" + std::to_string(number);
}

void ValidateMetricsListen(std::string_view listen) {
  if (listen.empty()) return;
  if (auto address = NormalizeListenAddress(listen); !address.ok()) {
    throw CLI::ValidationError("--metrics-listen", std::string(address.status().message()));
  }
}

absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetrics(std::string_view listen) {
  if (listen.empty()) return nullptr;
  auto address = NormalizeListenAddress(listen);
  if (!address.ok()) return address.status();
  auto server = MetricsServer::Start(*address);
  if (!server.ok()) return server.status();
  std::string host = address->substr(0, address->rfind(':'));
  Announce("metrics listening on " + host + ":" + std::to_string((*server)->Port()));
  return server;
}

std::string EscapeForLine(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  for (char c : bytes) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

std::string DumpJsonLine(const nlohmann::json& object) {
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json WatchesJson(const std::vector<kvstore::WatchFreshness>& watches,
                           std::chrono::system_clock::time_point now) {
  nlohmann::json array = nlohmann::json::array();
  for (const kvstore::WatchFreshness& watch : watches) {
    nlohmann::json item = {
        {"prefix", watch.prefix}, {"list-pages", watch.list_pages}, {"restarts", watch.restarts}};
    if (watch.last_heard.has_value()) {
      item["last-heard"] = absl::FormatTime(absl::RFC3339_sec, absl::FromChrono(*watch.last_heard),
                                            absl::UTCTimeZone());
      const auto age =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - *watch.last_heard);
      item["age-seconds"] = static_cast<double>(age.count()) / 1000.0;
    }
    if (!watch.stalled.empty()) item["stalled"] = watch.stalled;
    array.push_back(std::move(item));
  }
  return array;
}

Output::Output() : interactive_(isatty(STDOUT_FILENO) != 0) {}

void Output::EraseProgressLocked() {
  if (!progress_.empty()) std::cout << "\r\033[K";
}

void Output::PrintLine(std::string_view line) {
  kvstore::MutexLock lock(mu_);
  EraseProgressLocked();
  std::cout << line << '\n';
  if (!progress_.empty()) std::cout << progress_;
  std::cout.flush();
}

void Output::SetProgress(std::string_view progress) {
  if (!interactive_) return;
  kvstore::MutexLock lock(mu_);
  if (progress == progress_) return;
  EraseProgressLocked();
  progress_ = progress;
  std::cout << progress_;
  std::cout.flush();
}

void Output::ClearProgress() {
  kvstore::MutexLock lock(mu_);
  EraseProgressLocked();
  progress_.clear();
  std::cout.flush();
}

}  // namespace kvstorectl

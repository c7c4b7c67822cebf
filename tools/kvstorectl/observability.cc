#include "observability.h"

#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "CivetServer.h"
#include "agent_mesh_support.h"
#include "civetweb.h"
#include "kvstore/mutex.h"
#include "prometheus/text_serializer.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace kvstorectl {
namespace {

// %j: the log message as the body of a JSON string (quotes, backslashes and control bytes escaped).
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"':
          dest.append(std::string_view("\\\""));
          break;
        case '\\':
          dest.append(std::string_view("\\\\"));
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[] = {'\\', 'u', '0', '0', kHex[(c >> 4) & 0xf], kHex[c & 0xf]};
            dest.append(escaped, escaped + sizeof(escaped));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

}  // namespace

void ConfigureLogging(const std::string& level, const std::string& format) {
  auto logger = spdlog::stderr_logger_mt("kvstorectl");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  if (format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonEscapedMessage>('j').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%j"})");
    spdlog::set_formatter(std::move(formatter));
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  }
}

// Answers GET on one path with what `respond` returns: an HTTP status, a content type, a body.
class MetricsServer::Handler : public CivetHandler {
 public:
  struct Response {
    int code = 200;
    std::string content_type;
    std::string body;
  };

  explicit Handler(std::function<Response()> respond) : respond_(std::move(respond)) {}

  using CivetHandler::handleGet;
  bool handleGet(CivetServer*, mg_connection* conn) override {
    const Response response = respond_();
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
              response.code, response.code == 200 ? "OK" : "Service Unavailable",
              response.content_type.c_str(), response.body.size());
    mg_write(conn, response.body.data(), response.body.size());
    return true;
  }

 private:
  const std::function<Response()> respond_;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen) {
  auto server = std::unique_ptr<MetricsServer>(new MetricsServer());
  server->registry_ = std::make_shared<prometheus::Registry>();
  server->metrics_ = std::make_shared<kvstore::store::Metrics>(*server->registry_);
  MetricsServer* self = server.get();
  auto metrics = std::make_unique<Handler>([self] {
    const std::vector<prometheus::MetricFamily> families = self->registry_->Collect();
    return Handler::Response{200, "text/plain; version=0.0.4; charset=utf-8",
                             prometheus::TextSerializer().Serialize(families)};
  });
  auto probe = [self](Probe kind) {
    return std::make_unique<Handler>([self, kind] {
      const HealthReport report = self->RunCheck(kind);
      return Handler::Response{report.ok ? 200 : 503, "text/plain; charset=utf-8", report.body};
    });
  };
  std::unique_ptr<Handler> healthz = probe(Probe::kLiveness);
  std::unique_ptr<Handler> readyz = probe(Probe::kReadiness);
  auto status = std::make_unique<Handler>([self] {
    const HealthReport report = self->RunStatus();
    return Handler::Response{report.ok ? 200 : 503,
                             report.ok ? "application/json" : "text/plain; charset=utf-8",
                             report.body};
  });
  try {
    server->server_ = std::make_unique<CivetServer>(
        std::vector<std::string>{"listening_ports", listen, "num_threads", "2"});
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError("cannot serve metrics on " + listen + ": " + e.what());
  }
  server->server_->addHandler("/metrics", metrics.get());
  server->server_->addHandler("/healthz", healthz.get());
  server->server_->addHandler("/readyz", readyz.get());
  server->server_->addHandler("/status", status.get());
  server->handlers_.push_back(std::move(metrics));
  server->handlers_.push_back(std::move(healthz));
  server->handlers_.push_back(std::move(readyz));
  server->handlers_.push_back(std::move(status));
  return server;
}

MetricsServer::~MetricsServer() {
  // Stops the server threads before the handlers and the registry they use go.
  if (server_) server_->close();
  server_.reset();
}

int MetricsServer::Port() const {
  auto ports = server_->getListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void MetricsServer::SetHealthChecks(HealthCheck liveness, HealthCheck readiness) {
  kvstore::MutexLock lock(mu_);
  liveness_ = std::move(liveness);
  readiness_ = std::move(readiness);
}

void MetricsServer::SetStatusReport(StatusReport status) {
  kvstore::MutexLock lock(mu_);
  status_ = std::move(status);
}

void MetricsServer::StopHealthChecks() {
  kvstore::MutexLock lock(mu_);
  stopping_ = true;
  liveness_ = nullptr;
  readiness_ = nullptr;
  status_ = nullptr;
}

HealthReport MetricsServer::RunStatus() {
  kvstore::MutexLock lock(mu_);
  if (stopping_) return {false, "stopping\n"};
  if (!status_) return {false, "starting\n"};
  return {true, DumpJsonLine(status_()) + "\n"};
}

HealthReport MetricsServer::RunCheck(Probe probe) {
  kvstore::MutexLock lock(mu_);
  if (stopping_) return {false, "stopping\n"};
  const HealthCheck& check = probe == Probe::kLiveness ? liveness_ : readiness_;
  if (!check) return {probe == Probe::kLiveness, "starting\n"};
  return check();
}

}  // namespace kvstorectl

// SPDX-License-Identifier: Apache-2.0
// metrics_http.cc: the /metrics and /health HTTP endpoint on the shared connection skeleton; see
// metrics.h. Each request head goes through HttpRequestParser (bounded, no bodies); each answer is
// one write with Content-Length. The connection table, deadlines and output cap are the
// skeleton's (server.h), with the endpoint's own small limits below.
#include <event2/event.h>
#include <event2/thread.h>
#include <unistd.h>

#include "common/server/http_request.h"
#include "common/server/listener.h"
#include "common/server/logging.h"
#include "common/server/metrics.h"
#include "common/server/server.h"

namespace relaykit {

namespace {

// A scraper keeps its connection between scrapes (typically 15-60 s apart).
constexpr std::chrono::seconds kMetricsIdleTimeout{90};
constexpr std::chrono::seconds kMetricsRequestTimeout{10};
constexpr std::chrono::seconds kMetricsWriteTimeout{30};
// Connections of the trusted users (root, postfix) beyond the others' share.
constexpr std::size_t kMetricsReservedConnections = 8;
// Unread responses over which a keep-alive client that pipelines without reading stops being read.
constexpr std::size_t kMetricsMaxOutputBytes = 4 * 1024 * 1024;

std::string response(int status, int minorVersion, bool keepAlive, const char* contentType,
                     const std::string& body, bool head, const char* extraHeader = nullptr) {
  std::string out = "HTTP/1." + std::to_string(minorVersion) + " " + std::to_string(status) + " " +
                    httpReason(status) + "\r\n";
  out += std::string("Content-Type: ") + contentType + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (extraHeader != nullptr) {
    out += std::string(extraHeader) + "\r\n";
  }
  out += keepAlive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!head) {
    out += body;
  }
  return out;
}

class MetricsHttpService;

class MetricsHttpHandler : public ConnectionHandler {
 public:
  explicit MetricsHttpHandler(MetricsHttpService* service) : service_(service) {}
  void onData(Connection& conn, InputBuffer& input) override;
  bool midRequest() const override { return parser_.inProgress(); }

 private:
  void answer(Connection& conn);

  MetricsHttpService* service_;
  HttpRequestParser parser_;
};

class MetricsHttpService : public Service {
 public:
  MetricsHttpService(const MetricsRegistry* registry, HealthCheck healthy)
      : registry_(registry), healthy_(std::move(healthy)) {}
  DaemonSection section() const override { return DaemonSection::kSocketmap; }  // unused
  bool configure(const std::shared_ptr<const Config>&, Diagnostics*, bool) override { return true; }
  ServerLimits limits() const override {
    ServerLimits limits;
    limits.idleTimeout = kMetricsIdleTimeout;
    limits.requestTimeout = kMetricsRequestTimeout;
    limits.writeTimeout = kMetricsWriteTimeout;
    limits.maxInputBytes = kMaxHttpHeadBytes * 2;
    limits.maxOutputBytes = kMetricsMaxOutputBytes;
    limits.maxConnections = kMaxMetricsConnections;
    limits.reservedConnections = kMetricsReservedConnections;
    limits.maxConnectionsPerUser = kMaxMetricsConnectionsPerPeer;
    limits.maxConnectionsPerAddress = kMaxMetricsConnectionsPerPeer;
    return limits;
  }
  std::unique_ptr<ConnectionHandler> newConnection(Connection&) override {
    return std::make_unique<MetricsHttpHandler>(this);
  }
  const MetricsRegistry* registry() const { return registry_; }
  Health health() const override { return healthy_ ? healthy_() : Health::ok(); }

 private:
  const MetricsRegistry* registry_;
  HealthCheck healthy_;
};

void MetricsHttpHandler::onData(Connection& conn, InputBuffer& input) {
  while (conn.isOpen() && !conn.outputBlocked() && !input.empty()) {
    const std::size_t consumed = parser_.feed(input.view());
    input.consume(consumed);
    if (parser_.state() == HttpRequestParser::State::kHead) {
      if (consumed == 0) {
        return;
      }
      continue;
    }
    answer(conn);
  }
}

void MetricsHttpHandler::answer(Connection& conn) {
  if (parser_.state() == HttpRequestParser::State::kError) {
    logInfo("metrics endpoint: closing connection from " + conn.peer() + ": " + parser_.error());
    conn.send(response(parser_.errorStatus(), 1, false, "text/plain",
                       std::string(httpReason(parser_.errorStatus())) + "\n", false));
    conn.closeAfterWrite();
    return;
  }
  const HttpRequestHead head = parser_.head();
  parser_.reset();
  const bool isHead = head.method == "HEAD";
  std::string path = head.target;
  const auto q = path.find('?');
  if (q != std::string::npos) {
    path.resize(q);
  }
  if (head.method != "GET" && !isHead) {
    conn.send(response(405, head.minorVersion, head.keepAlive, "text/plain", "Method Not Allowed\n",
                       false, "Allow: GET, HEAD"));
  } else if (path == "/metrics") {
    conn.send(response(200, head.minorVersion, head.keepAlive,
                       "text/plain; version=0.0.4; charset=utf-8", service_->registry()->render(),
                       isHead));
  } else if (path == "/health" || path == "/healthz") {
    const Health health = service_->health();
    std::string text;
    switch (health.level) {
      case Health::Level::Ok:
        text = "ok\n";
        break;
      case Health::Level::Degraded:
        text = "degraded: " + health.reason + "\n";
        break;
      case Health::Level::Unavailable:
        text = "unavailable: " + health.reason + "\n";
        break;
    }
    const bool up = health.level != Health::Level::Unavailable;
    conn.send(
        response(up ? 200 : 503, head.minorVersion, head.keepAlive, "text/plain", text, isHead));
  } else {
    conn.send(
        response(404, head.minorVersion, head.keepAlive, "text/plain", "Not Found\n", isHead));
  }
  if (!head.keepAlive) {
    conn.closeAfterWrite();
  }
}

}  // namespace

StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::create(
    event_base* base, const Endpoint& endpoint, const MetricsRegistry* registry,
    HealthCheck healthy) {
  auto fd = openListener(endpoint);
  if (!fd) {
    return Status::error("metrics_listen: " + fd.status().message());
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer());
  server->port_ = localPort(*fd);
  server->service_ = std::make_unique<MetricsHttpService>(registry, std::move(healthy));
  server->server_ =
      std::make_unique<Server>(base, server->service_.get(), server->service_->limits());
  Status listening = server->server_->addListener(*fd, "metrics " + endpoint.toString());
  if (!listening) {
    return Status::error("metrics_listen: cannot serve HTTP on " + endpoint.toString());
  }
  return StatusOr<std::unique_ptr<MetricsHttpServer>>(std::move(server));
}

void MetricsHttpServer::countInto(MetricsRegistry* registry) {
  server_->setMetrics(registry, "metrics");
}

MetricsHttpServer::~MetricsHttpServer() {
  server_.reset();  // closes the listener and every connection
}

StatusOr<std::unique_ptr<MetricsThread>> MetricsThread::start(const Endpoint& endpoint,
                                                              const MetricsRegistry* registry,
                                                              HealthCheck healthy) {
  static std::once_flag threadsOnce;
  std::call_once(threadsOnce, [] { evthread_use_pthreads(); });
  std::unique_ptr<MetricsThread> t(new MetricsThread());
  t->base_ = event_base_new();
  if (t->base_ == nullptr) {
    return Status::error("metrics_listen: cannot create an event loop");
  }
  auto server = MetricsHttpServer::create(t->base_, endpoint, registry, std::move(healthy));
  if (!server) {
    event_base_free(t->base_);
    t->base_ = nullptr;
    return server.status();
  }
  t->server_ = std::move(*server);
  // event_base_loopbreak from another thread is lost if it comes before the loop starts (the loop
  // clears the flag on entry); an activated event is not.
  t->stop_ = event_new(
      t->base_, -1, 0,
      [](evutil_socket_t, short, void* arg) {
        event_base_loopbreak(static_cast<event_base*>(arg));
      },
      t->base_);
  event_base* base = t->base_;
  t->thread_ = std::thread([base] { event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY); });
  return StatusOr<std::unique_ptr<MetricsThread>>(std::move(t));
}

MetricsThread::~MetricsThread() {
  if (base_ != nullptr) {
    event_active(stop_, EV_READ, 0);
    if (thread_.joinable()) {
      thread_.join();
    }
    event_free(stop_);
    server_.reset();
    event_base_free(base_);
  }
}

}  // namespace relaykit

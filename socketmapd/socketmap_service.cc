// SPDX-License-Identifier: Apache-2.0
// socketmap_service.cc: netstring framing, request dispatch, logging and metrics for socketmapd.
#include "socketmapd/socketmap_service.h"

#include <chrono>

#include "common/netstring.h"
#include "common/server/logging.h"
#include "common/socketmap_protocol.h"

namespace relaykit {

namespace {

// Bytes of a key or map name quoted in a log line.
constexpr std::size_t kMaxLoggedKeyBytes = 200;

// `text` made safe and short for a log line.
std::string printable(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size() && i < kMaxLoggedKeyBytes; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    out.push_back(c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c));
  }
  if (text.size() > kMaxLoggedKeyBytes) {
    out += "...";
  }
  return out;
}

const char* answerLabel(LookupResult::Kind kind) {
  switch (kind) {
    case LookupResult::Kind::kFound:
      return "ok";
    case LookupResult::Kind::kNotFound:
      return "notfound";
    case LookupResult::Kind::kTempError:
      return "temp";
    case LookupResult::Kind::kPermError:
      return "perm";
  }
  return "perm";
}

class SocketmapHandler : public ConnectionHandler {
 public:
  explicit SocketmapHandler(SocketmapService* service)
      : service_(service), decoder_(kMaxSocketmapRequestBytes) {
    if (service_->connections() != nullptr) {
      service_->connections()->inc();
    }
  }

  void onData(Connection& conn, InputBuffer& input) override {
    // Stops while the replies queued for a client that does not read them are over the output
    // cap: the rest stays in `input` until the client reads (or the write deadline closes it).
    while (conn.isOpen() && !conn.outputBlocked() && !input.empty()) {
      const std::size_t consumed = decoder_.feed(input.view());
      input.consume(consumed);
      if (decoder_.state() == NetstringDecoder::State::kError) {
        logWarning("closing connection from " + conn.peer() + ": bad request: " + decoder_.error());
        service_->countProtocolError(
            decoder_.errorKind() == NetstringDecoder::Error::kTooLong ? "oversized" : "malformed");
        conn.close();
        return;
      }
      if (decoder_.state() != NetstringDecoder::State::kMessage) {
        if (consumed == 0) {
          break;  // nothing more to take (should not happen)
        }
        continue;
      }
      std::string payload = decoder_.takeMessage();
      service_->handleRequest(conn, payload);
    }
  }

  void onEof(Connection& conn, std::size_t unconsumed) override {
    if (decoder_.inProgress() || unconsumed > 0) {
      logWarning("connection from " + conn.peer() + " closed in the middle of a request");
      service_->countProtocolError("truncated");
    }
  }

  void onClose(Connection&) override {
    if (service_->connections() != nullptr) {
      service_->connections()->dec();
    }
  }

  // Part of a netstring is in the decoder: the request deadline runs.
  bool midRequest() const override { return decoder_.inProgress(); }

 private:
  SocketmapService* service_;
  NetstringDecoder decoder_;
};

}  // namespace

bool SocketmapService::configure(const std::shared_ptr<const Config>& config, Diagnostics* diags,
                                 bool install) {
  if (config->tables.empty()) {
    diags->warning(SourceLocation{config->file, 0, 0},
                   "no tables: relaykit-socketmapd will answer PERM for every map");
  }
  if (install) {
    config_.set(config);
    std::lock_guard<std::mutex> lock(unknownMutex_);
    loggedUnknownMaps_.clear();
  }
  return true;
}

Status SocketmapService::start(event_base*, MetricsRegistry* metrics) {
  requests_ = &metrics->counter("relaykit_socketmap_requests_total",
                                "Socketmap requests by map name", {"map"});
  answers_ = &metrics->counter("relaykit_socketmap_answers_total",
                               "Socketmap answers by map and kind (ok, notfound, temp, perm)",
                               {"map", "answer"});
  errors_ = &metrics->counter(
      "relaykit_socketmap_errors_total",
      "Socketmap protocol and lookup problems (malformed, oversized, truncated, unknown_map, "
      "reply_too_large, lookup_error)",
      {"kind"});
  latency_ = &metrics->histogram("relaykit_socketmap_lookup_seconds",
                                 "Time to answer one socketmap request", {"map"});
  connections_ =
      &metrics->gauge("relaykit_socketmap_connections", "Open socketmap connections").get();
  return Status::ok();
}

Health SocketmapService::health() const {
  std::shared_ptr<const Config> config = snapshot();
  if (config == nullptr) {
    return Health::unavailable("no configuration loaded");
  }
  if (config->tables.empty()) {
    return Health::unavailable("no tables loaded from " + config->file +
                               ": every lookup is answered PERM");
  }
  return Health::ok();
}

ServerLimits SocketmapService::limits() const {
  ServerLimits limits;
  limits.idleTimeout = kSocketmapIdleTimeout;
  // The decoder holds a request's bytes itself; the input buffer only sees one read's worth.
  limits.maxInputBytes = kMaxSocketmapRequestBytes + 64;
  return limits;
}

std::unique_ptr<ConnectionHandler> SocketmapService::newConnection(Connection&) {
  return std::make_unique<SocketmapHandler>(this);
}

void SocketmapService::countProtocolError(const char* kind) {
  if (errors_ != nullptr) {
    errors_->labels({kind}).inc();
  }
}

bool SocketmapService::shouldLogUnknownMap(std::string_view name) {
  std::lock_guard<std::mutex> lock(unknownMutex_);
  if (loggedUnknownMaps_.count(std::string(name)) > 0) {
    return false;
  }
  if (loggedUnknownMaps_.size() < kMaxLoggedUnknownMaps) {
    loggedUnknownMaps_.insert(std::string(name));
  }
  return true;
}

void SocketmapService::handleRequest(Connection& conn, std::string_view payload) {
  const auto started = std::chrono::steady_clock::now();
  auto request = parseSocketmapRequest(payload);
  if (!request) {
    logWarning("closing connection from " + conn.peer() + ": " + request.status().message() +
               ": \"" + printable(payload) + "\"");
    countProtocolError("malformed");
    conn.close();
    return;
  }
  std::shared_ptr<const Config> config = snapshot();
  SocketmapAnswer answer;
  if (config == nullptr) {
    answer.kind = LookupResult::Kind::kTempError;
    answer.reply = "TEMP relaykit-socketmapd has no configuration";
  } else {
    answer = answerSocketmap(*config, request->name, request->key);
  }
  conn.send(encodeNetstring(answer.reply));

  const std::string mapLabel = answer.unknownMap ? "(unknown)" : std::string(request->name);
  if (answer.unknownMap) {
    countProtocolError("unknown_map");
    if (shouldLogUnknownMap(request->name)) {
      logWarning("unknown map \"" + printable(request->name) + "\" requested by " + conn.peer() +
                 " (maps are the names under tables:)");
    }
  } else if (answer.replyTooLarge) {
    countProtocolError("reply_too_large");
    logWarning("map " + mapLabel + " key \"" + printable(request->key) + "\": " + answer.detail +
               ": answered PERM");
  } else if (answer.kind == LookupResult::Kind::kTempError ||
             answer.kind == LookupResult::Kind::kPermError) {
    countProtocolError("lookup_error");
    logWarning("map " + mapLabel + " key \"" + printable(request->key) + "\": " + answer.reply);
  }
  if (requests_ != nullptr) {
    MapSeries& series = seriesFor(mapLabel);
    series.requests->inc();
    series.answers[static_cast<int>(answer.kind)]->inc();
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
    series.latency->observe(elapsed.count());
  }
}

SocketmapService::MapSeries& SocketmapService::seriesFor(const std::string& mapLabel) {
  auto it = series_.find(mapLabel);
  if (it != series_.end()) {
    return it->second;
  }
  MapSeries series;
  series.requests = &requests_->labels({mapLabel});
  for (auto kind : {LookupResult::Kind::kFound, LookupResult::Kind::kNotFound,
                    LookupResult::Kind::kTempError, LookupResult::Kind::kPermError}) {
    series.answers[static_cast<int>(kind)] = &answers_->labels({mapLabel, answerLabel(kind)});
  }
  series.latency = &latency_->labels({mapLabel});
  return series_.emplace(mapLabel, series).first->second;
}

}  // namespace relaykit

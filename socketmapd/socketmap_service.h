// SPDX-License-Identifier: Apache-2.0
// socketmap_service.h: relaykit-socketmapd's protocol glue: netstring requests in, table answers
// out, on the shared daemon skeleton (common/server/daemon.h).
//
// Every map name of the `tables:` section is served on every listen endpoint. Each request takes
// the LATEST config snapshot (requests are independent lookups; a reload applies to the next
// request of every open connection, and one request never sees two snapshots). Each reply leaves
// in one write. A malformed or oversized request is logged and the connection closed (the stream
// cannot be resynchronised); an unknown map is answered "PERM unknown map NAME" and logged once per
// map name and configuration. Idle connections close after 60 s (Postfix closes its own after 10
// s).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "common/config.h"
#include "common/server/connection.h"
#include "common/server/metrics.h"
#include "common/snapshot.h"

namespace relaykit {

// Idle timeout of a socketmap connection, longer than Postfix's 10 s client-side idle close.
inline constexpr std::chrono::seconds kSocketmapIdleTimeout{60};
// Unknown map names remembered (to log each once) per configuration.
inline constexpr std::size_t kMaxLoggedUnknownMaps = 256;

class SocketmapService : public Service {
 public:
  DaemonSection section() const override { return DaemonSection::kSocketmap; }
  bool configure(const std::shared_ptr<const Config>& config, Diagnostics* diags,
                 bool install) override;
  Status start(event_base* base, MetricsRegistry* metrics) override;
  // Unavailable (503) while no table is loaded: every lookup would be answered PERM.
  Health health() const override;
  ServerLimits limits() const override;
  std::unique_ptr<ConnectionHandler> newConnection(Connection& conn) override;

  // For the handlers.
  std::shared_ptr<const Config> snapshot() const { return config_.get(); }
  // Answers one decoded request payload on `conn` (one reply, one write); closes the connection on
  // a malformed request.
  void handleRequest(Connection& conn, std::string_view payload);
  void countProtocolError(const char* kind);
  Gauge* connections() const { return connections_; }

 private:
  bool shouldLogUnknownMap(std::string_view name);

  SnapshotHolder<Config> config_;
  std::mutex unknownMutex_;
  std::set<std::string> loggedUnknownMaps_;
  // Metrics (set in start()).
  CounterFamily* requests_ = nullptr;
  CounterFamily* answers_ = nullptr;
  CounterFamily* errors_ = nullptr;
  HistogramFamily* latency_ = nullptr;
  Gauge* connections_ = nullptr;
  // The series of one map label, resolved once (a family lookup takes a lock and builds label
  // vectors). Touched on the loop thread only; bounded by the map names ever configured + 1.
  struct MapSeries {
    Counter* requests = nullptr;
    Counter* answers[4] = {nullptr, nullptr, nullptr, nullptr};  // by LookupResult::Kind
    Histogram* latency = nullptr;
  };
  MapSeries& seriesFor(const std::string& mapLabel);
  std::unordered_map<std::string, MapSeries> series_;
};

}  // namespace relaykit

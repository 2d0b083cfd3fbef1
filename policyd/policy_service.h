// SPDX-License-Identifier: Apache-2.0
// policy_service.h: relaykit-policyd's glue on the shared daemon skeleton (common/server/):
// policy requests in, one `action=` reply out per request, in order, each in one write.
//
// Each request takes the LATEST policy snapshot. Requests needing the store pause reading on that
// connection until the store answers (at most redis.timeout_ms; on_store_error applies to errors),
// so a connection never has two decisions in flight. Malformed input (see policy_codec.h) is
// logged and the connection closed without a reply, as Postfix expects. The store (memory or
// Redis) is created in start() from the snapshot of that moment: changing `store:` or the
// redis: section takes a restart (a reload says so). Everything runs on the loop thread.
#pragma once

#include <event2/event.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/server/connection.h"
#include "common/server/logging.h"
#include "common/server/metrics.h"
#include "common/server/server.h"
#include "common/snapshot.h"
#include "policyd/admin_protocol.h"
#include "policyd/alert_notifier.h"
#include "policyd/policy_codec.h"
#include "policyd/policy_config.h"
#include "policyd/policy_engine.h"
#include "policyd/rate_store.h"
#include "policyd/recipient_tracker.h"
#include "policyd/redis_store.h"

namespace relaykit::policy {

// Postfix closes an idle policy connection after smtpd_policy_service_max_idle (300 s).
inline constexpr std::chrono::seconds kPolicyIdleTimeout{600};
// Requests queued on one connection (Postfix sends one at a time; more is abuse).
inline constexpr std::size_t kMaxQueuedRequests = 16;
// Store errors are logged at most this often (the rest are counted in the next line).
inline constexpr std::chrono::seconds kStoreErrorLogInterval{1};

class PolicyService : public Service {
 public:
  PolicyService() = default;
  ~PolicyService() override;
  PolicyService(const PolicyService&) = delete;
  PolicyService& operator=(const PolicyService&) = delete;
  DaemonSection section() const override { return DaemonSection::kPolicy; }
  bool configure(const std::shared_ptr<const Config>& config, Diagnostics* diags,
                 bool install) override;
  Status start(event_base* base, MetricsRegistry* metrics) override;
  void stop() override;
  ServerLimits limits() const override;
  // /health: with the Redis store and no connection to it, unavailable (503) under
  // on_store_error: closed (every limited request is deferred) and degraded (200) under open
  // (mail flows, limits are not enforced); ok otherwise.
  Health health() const override;
  std::unique_ptr<ConnectionHandler> newConnection(Connection& conn) override;
  // The allowances files of the installed snapshot (the skeleton reloads when one changes).
  std::vector<WatchedFile> watchedFiles() const override;

  // For the handlers.
  std::shared_ptr<const PolicyConfig> snapshot() const { return config_.get(); }
  using Reply = std::function<void(std::string action)>;
  // Decides one request. Returns true when it is decided at once (no store round trip, the
  // memory store), with the action in *action. Otherwise (Redis) the request has been moved
  // from, `later` was called once for the reply function, which gets the action exactly once
  // (maybe before decideRequest returns), and false is returned. `later` builds the reply only
  // when it is needed: the common path allocates nothing for it.
  bool decideRequest(PolicyRequest& request, std::string* action,
                     const std::function<Reply()>& later);
  void countProtocolError(const char* kind);
  Gauge* connections() const { return connections_; }
  // One `relaykit limits` request from the admin socket; returns the reply line.
  std::string admin(const AdminCommand& command);

 private:
  // The store's answer to a plan: the verdict, logged and counted (finish); returns the action.
  std::string complete(const PolicyConfig& config, const PolicyRequest& request, const Plan& plan,
                       const StatusOr<StoreResult>& result,
                       std::chrono::steady_clock::time_point started);
  void finish(const PolicyConfig& config, const PolicyRequest& request, const Plan& plan,
              const Verdict& verdict, std::chrono::steady_clock::time_point started);
  void rememberRecipient(const std::string& instance, const std::string& recipient);
  void logStoreError(const std::string& line);
  // Releases the snapshot a reload replaced (see retirer_).
  void retire(std::shared_ptr<const PolicyConfig> old);
  void syncRedisMetrics();
  static void onMetricsTimer(evutil_socket_t fd, short what, void* arg);

  SnapshotHolder<PolicyConfig> config_;
  // The snapshot a reload's worker compiled (configure, install=false) and the Config it came
  // from: the loop thread's configure(install=true) of that Config installs it as is instead of
  // compiling it again (a large allowances file must not be read on the loop).
  std::mutex compiledMutex_;
  std::weak_ptr<const Config> compiledFrom_;
  std::shared_ptr<const PolicyConfig> compiled_;
  // Frees a replaced snapshot off the loop (a 100,000-entry allowance index takes ms to free).
  std::thread retirer_;
  std::unique_ptr<RateStore> store_;
  RedisStore* redis_ = nullptr;
  MemoryStore* memory_ = nullptr;
  // policy.admin_socket: bound at the first install (before privileges are dropped), served
  // from start() by a Server of its own; changing the path needs a restart.
  int adminFd_ = -1;
  std::string adminPath_;
  std::unique_ptr<Service> adminService_;
  std::unique_ptr<Server> adminServer_;
  event* metricsTimer_ = nullptr;  // refreshes the Redis gauges once a second
  std::string storeName_ = "memory";
  Plan plan_;  // the plan of the request being decided (moved away when the store is Redis)
  RecipientTracker recipients_;  // instance -> accepted at RCPT (bounded: recipient_tracker.h)
  std::unique_ptr<AlertNotifier> alerts_;  // policy.alerts: trips -> alerts (set in start())
  std::size_t seenEvictions_ = 0;
  std::chrono::steady_clock::time_point lastEvictionLog_{};
  // Metrics (set in start()).
  CounterFamily* requests_ = nullptr;
  CounterFamily* answers_ = nullptr;
  CounterFamily* limitHits_ = nullptr;
  CounterFamily* errors_ = nullptr;
  HistogramFamily* latency_ = nullptr;
  // Hot-path series, resolved once in start() (labels() locks and allocates).
  Counter* stageRequests_[4] = {};
  Counter* answerDunno_ = nullptr;
  Counter* answerFilter_ = nullptr;
  Counter* answerRefused_ = nullptr;
  Histogram* latencySeries_ = nullptr;
  Gauge* connections_ = nullptr;
  Gauge* redisUp_ = nullptr;
  Counter* redisTimeouts_ = nullptr;
  Counter* redisConnects_ = nullptr;
  // Sentinel only (null otherwise).
  Counter* redisFailovers_ = nullptr;
  GaugeFamily* redisPrimary_ = nullptr;
  Gauge* redisNoPrimary_ = nullptr;
  std::string shownPrimary_;
  std::uint64_t seenFailovers_ = 0;
  ThrottledWarning storeErrorLog_{kStoreErrorLogInterval};
  std::uint64_t seenTimeouts_ = 0;
  std::uint64_t seenConnects_ = 0;
};

}  // namespace relaykit::policy

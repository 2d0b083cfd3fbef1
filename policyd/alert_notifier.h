// SPDX-License-Identifier: Apache-2.0
// alert_notifier.h: turns the trips of decided verdicts into alerts, once per principal, limit
// and window, for the whole fleet when the store is Redis (see policyd/README.md, "Alerts").
//
// Runs on the loop thread, after the decision was made; never changes a decision and never
// blocks: the syslog line is one write, a mail is only queued (alert_mailer.h), the fleet-wide
// claim is asynchronous. For each trip (limit, principal):
//  - a window already open on this relay (its own, or one another relay claimed): suppressed;
//  - memory store: this relay's table (alert.h AlertWindows) opens the window and alerts;
//  - Redis store: RedisStore::claim() of "alert:{digest}:LIMIT" with the relay's name for the
//    window's length; only the relay whose SET succeeded alerts, the others remember until when
//    the window is taken. On a Redis error the relay falls back to its own table (an alert may
//    then come from more than one relay: better twice than never). At most
//    kMaxPendingAlertClaims claims wait for Redis; beyond, the trip's alert is dropped and
//    counted.
// Counted: relaykit_policy_alerts_total{limit,channel,result} (channel syslog|mail, result
// sent|failed), relaykit_policy_alerts_dropped_total{reason} (queue_full, store_busy),
// relaykit_policy_alerts_suppressed_total{limit} (trips within an open window).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/server/logging.h"
#include "common/server/metrics.h"
#include "policyd/alert.h"
#include "policyd/alert_mailer.h"
#include "policyd/policy_engine.h"
#include "policyd/redis_store.h"

namespace relaykit::policy {

// Fleet-wide claims waiting for Redis at once.
inline constexpr std::size_t kMaxPendingAlertClaims = 1000;
// Problem lines of the alert path (Redis errors, drops) are logged at most this often.
inline constexpr std::chrono::seconds kAlertProblemLogInterval{1};

class AlertNotifier {
 public:
  // `redis`: the Redis store (claims), or null (memory store: this relay's table only).
  AlertNotifier(MetricsRegistry* metrics, RedisStore* redis, MicrosClock clock = systemMicros);
  // Stops the mail worker: a running sendmail is killed, queued mails are discarded and logged.
  ~AlertNotifier();
  AlertNotifier(const AlertNotifier&) = delete;
  AlertNotifier& operator=(const AlertNotifier&) = delete;

  // The trips of one verdict (verdict.hits); `config.alerts` says how to alert.
  void onTrips(const PolicyConfig& config, const PolicyRequest& request, const Plan& plan,
               const Verdict& verdict);
  // Before the Redis store goes away: claims still pending are then ignored.
  void detachStore();

  std::size_t pendingClaims() const { return pendingClaims_; }
  const AlertWindows& windows() const { return windows_; }

 private:
  void emit(const AlertSettings& settings, const AlertEvent& event);
  void dropped(const char* reason, const std::string& what);

  MetricsRegistry* metrics_;
  RedisStore* redis_;
  MicrosClock clock_;
  std::string hostname_;
  AlertWindows windows_;
  std::unique_ptr<AlertMailer> mailer_;  // started with the first mail
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::size_t pendingClaims_ = 0;
  std::uint64_t sequence_ = 0;
  ThrottledWarning problems_{kAlertProblemLogInterval};  // Redis errors, drops
  CounterFamily* alerts_ = nullptr;
  CounterFamily* dropped_ = nullptr;
  CounterFamily* suppressed_ = nullptr;
};

}  // namespace relaykit::policy

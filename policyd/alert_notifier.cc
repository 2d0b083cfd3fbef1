// SPDX-License-Identifier: Apache-2.0
// alert_notifier.cc: trips -> deduplicated alerts (syslog line, queued mail); see
// alert_notifier.h.
#include "policyd/alert_notifier.h"

#include <unistd.h>

#include <climits>

#include "common/server/logging.h"

namespace relaykit::policy {

namespace {

std::string hostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') {
    return "localhost";
  }
  return sanitizeAlertValue(name, kMaxAlertAddressBytes);
}

const char* stageName(Stage stage) {
  switch (stage) {
    case Stage::kRcpt:
      return "RCPT";
    case Stage::kData:
      return "DATA";
    case Stage::kEndOfMessage:
      return "END-OF-MESSAGE";
    case Stage::kOther:
      break;
  }
  return "OTHER";
}

}  // namespace

AlertNotifier::AlertNotifier(MetricsRegistry* metrics, RedisStore* redis, MicrosClock clock)
    : metrics_(metrics), redis_(redis), clock_(std::move(clock)), hostname_(hostName()) {
  alerts_ = &metrics_->counter("relaykit_policy_alerts_total",
                               "Alerts of tripped limits, by limit, channel (syslog, mail) and "
                               "result (sent, failed)",
                               {"limit", "channel", "result"});
  dropped_ = &metrics_->counter("relaykit_policy_alerts_dropped_total",
                                "Alerts not sent, by reason (queue_full: the sendmail queue, "
                                "store_busy: too many Redis claims pending)",
                                {"reason"});
  suppressed_ = &metrics_->counter(
      "relaykit_policy_alerts_suppressed_total",
      "Trips not alerted because their principal's alert window was open (this or another relay)",
      {"limit"});
}

AlertNotifier::~AlertNotifier() {
  *alive_ = false;
  if (mailer_ != nullptr) {
    const std::size_t queued = mailer_->queued();
    if (queued > 0) {
      logWarning("alerts: stopping: " + std::to_string(queued) + " alert mail(s) not submitted");
    }
    mailer_.reset();
  }
}

void AlertNotifier::detachStore() {
  *alive_ = false;
  alive_ = std::make_shared<bool>(true);
  redis_ = nullptr;
  pendingClaims_ = 0;
}

void AlertNotifier::dropped(const char* reason, const std::string& what) {
  dropped_->labels({reason}).inc();
  problems_.log("alerts: dropped the alert of " + what + ": " + reason);
}

void AlertNotifier::onTrips(const PolicyConfig& config, const PolicyRequest& request,
                            const Plan& plan, const Verdict& verdict) {
  const AlertSettings& settings = config.alerts;
  if (!settings.enabled) {
    return;
  }
  for (const LimitHit& hit : verdict.hits) {
    if (hit.charge >= plan.rules.size() || !plan.rules[hit.charge]->alert) {
      continue;
    }
    const LimitRule& rule = *plan.rules[hit.charge];
    const StoreCharge& charge = plan.store.charges[hit.charge];
    const std::string key = alertKeyFor(charge.key);
    const std::int64_t nowUs = clock_();
    if (windows_.isOpen(key, nowUs)) {
      suppressed_->labels({rule.name}).inc();
      continue;
    }
    AlertEvent event;
    event.limit = rule.name;
    event.warnOnly = hit.warnOnly;
    event.principal = plan.principals[hit.charge];
    event.stage = stageName(plan.stage);
    event.countUnit = countUnitName(rule.count);
    event.windows = charge.windows;
    event.intervalUs = alertIntervalUs(settings.intervalUs, charge.windows);
    event.retryAfterSeconds = hit.retryAfterSeconds;
    event.sender = request.get("sender");
    event.client = request.get("client_address");
    event.heloName = request.get("helo_name");
    event.saslUsername = request.get("sasl_username");
    event.queueId = request.get("queue_id");
    event.relay = settings.relayName.empty() ? hostname_ : settings.relayName;
    event.atUs = nowUs;
    event.fleetWide = redis_ != nullptr;
    if (redis_ == nullptr) {
      windows_.open(key, nowUs, event.intervalUs);
      emit(settings, event);
      continue;
    }
    if (pendingClaims_ >= kMaxPendingAlertClaims) {
      dropped("store_busy", "limit " + rule.name);
      continue;
    }
    ++pendingClaims_;
    std::weak_ptr<bool> alive = alive_;
    redis_->claim(key, event.relay, (event.intervalUs + 999) / 1000,
                  [this, alive, key, settings, event](StatusOr<std::int64_t> result) {
                    auto flag = alive.lock();
                    if (!flag || !*flag) {
                      return;  // the store (or this notifier) is going away
                    }
                    --pendingClaims_;
                    const std::int64_t now = clock_();
                    if (result.isOk() && *result == 0) {
                      windows_.remember(key, event.atUs + event.intervalUs, now);
                      emit(settings, event);
                    } else if (result.isOk()) {
                      windows_.remember(key, now + *result * 1000, now);
                      suppressed_->labels({event.limit}).inc();
                    } else {
                      problems_.log("alerts: cannot claim the alert window in Redis (" +
                                    result.status().message() +
                                    "); alerting from this relay alone");
                      if (windows_.open(key, now, event.intervalUs)) {
                        AlertEvent local = event;
                        local.fleetWide = false;
                        emit(settings, local);
                      } else {
                        suppressed_->labels({event.limit}).inc();
                      }
                    }
                  });
  }
}

void AlertNotifier::emit(const AlertSettings& settings, const AlertEvent& event) {
  if (settings.syslog) {
    logInfo(formatAlertLogLine(event));
    alerts_->labels({event.limit, "syslog", "sent"}).inc();
  }
  if (settings.mailTo.empty()) {
    return;
  }
  if (mailer_ == nullptr) {
    CounterFamily* alerts = alerts_;
    mailer_ =
        std::make_unique<AlertMailer>([alerts](const AlertMailer::Job& job, const Status& result) {
          if (result.isOk()) {
            alerts->labels({job.limit, "mail", "sent"}).inc();
            logInfo("alerts: alert mail for limit " + job.limit + " submitted");
          } else {
            alerts->labels({job.limit, "mail", "failed"}).inc();
            logWarning("alerts: alert mail for limit " + job.limit +
                       " not submitted: sendmail: " + result.message());
          }
        });
  }
  AlertMailer::Job job;
  job.limit = event.limit;
  job.argv = sendmailArgv(settings);
  job.message = formatAlertMail(settings, event, ++sequence_);
  job.timeout = settings.timeout;
  if (!mailer_->submit(std::move(job), settings.queue)) {
    dropped("queue_full", "limit " + event.limit + " (" + std::to_string(settings.queue) +
                              " alert mails already wait for sendmail)");
  }
}

}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// policy_service.cc: per-connection codec, ordered async decisions, logging and metrics for
// relaykit-policyd; see policy_service.h.
#include "policyd/policy_service.h"

#include "common/endpoint.h"
#include "common/server/listener.h"
#include "common/server/logging.h"
#include "policyd/memory_store.h"

namespace relaykit::policy {

namespace {

const char* stageLabel(Stage stage) {
  switch (stage) {
    case Stage::kRcpt:
      return "rcpt";
    case Stage::kData:
      return "data";
    case Stage::kEndOfMessage:
      return "end_of_message";
    case Stage::kOther:
      break;
  }
  return "other";
}

class PolicyHandler : public ConnectionHandler {
 public:
  explicit PolicyHandler(PolicyService* service) : service_(service) {
    if (service_->connections() != nullptr) {
      service_->connections()->inc();
    }
  }

  void onData(Connection& conn, InputBuffer& input) override {
    std::vector<PolicyRequest>& requests = parsed_;  // reused: no allocation per call
    requests.clear();
    if (!input.empty()) {
      Status s = codec_.feed(input.view(), &requests);
      input.consume(input.size());
      if (!s.isOk()) {
        logWarning("closing policy connection from " + conn.peer() + ": " + s.message());
        service_->countProtocolError("malformed");
        conn.close();
        return;
      }
    }
    for (PolicyRequest& r : requests) {
      if (Status s = checkRequest(r); !s.isOk()) {
        logWarning("closing policy connection from " + conn.peer() + ": " + s.message());
        service_->countProtocolError("malformed");
        conn.close();
        return;
      }
    }
    if (queue_.size() - head_ + requests.size() > kMaxQueuedRequests) {
      logWarning("closing policy connection from " + conn.peer() + ": more than " +
                 std::to_string(kMaxQueuedRequests) + " requests without waiting for replies");
      service_->countProtocolError("flood");
      conn.close();
      return;
    }
    if (head_ > 0) {  // drop the answered ones (moved from: nothing to free)
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    for (PolicyRequest& r : requests) {
      queue_.push_back(std::move(r));
    }
    requests.clear();
    next(conn);
  }

  void onEof(Connection& conn, std::size_t unconsumed) override {
    if (codec_.midRequest() || unconsumed > 0) {
      logWarning("policy connection from " + conn.peer() + " closed in the middle of a request");
      service_->countProtocolError("truncated");
    }
  }

  void onClose(Connection&) override {
    if (service_->connections() != nullptr) {
      service_->connections()->dec();
    }
  }

  // Part of a request is in the codec: the skeleton's request deadline runs.
  bool midRequest() const override { return codec_.midRequest(); }

 private:
  // Answers queued requests in order, one at a time; stops while one waits for the store. The
  // store calls back either inside decideRequest (memory store, errors) or later from the event
  // loop (Redis). A request decided at once goes back to the codec for its buffers.
  void next(Connection& conn) {
    while (!busy_ && conn.isOpen() && head_ < queue_.size()) {
      PolicyRequest& request = queue_[head_++];
      busy_ = true;
      inCall_ = true;
      const bool now = service_->decideRequest(request, &action_, [this, &conn] {
        std::weak_ptr<Connection> weak = conn.weak();
        return PolicyService::Reply([weak, this](std::string action) {
          auto c = weak.lock();
          if (!c || !c->isOpen()) {
            return;  // the connection (and this handler) is gone
          }
          formatPolicyReply(action, &reply_);
          c->send(reply_);
          busy_ = false;
          if (!inCall_) {
            next(*c);
          }
        });
      });
      inCall_ = false;
      if (now) {
        codec_.recycle(std::move(request));
        formatPolicyReply(action_, &reply_);
        conn.send(reply_);
        busy_ = false;
        continue;
      }
      if (busy_) {
        // The store answers later. Reading goes on (Postfix sends one request at a time; more
        // is refused by the kMaxQueuedRequests bound): pausing and resuming the read event
        // would cost two epoll_ctl(2) calls per request.
        return;
      }
    }
    if (head_ == queue_.size()) {
      queue_.clear();
      head_ = 0;
    }
  }

  PolicyService* service_;
  PolicyCodec codec_;
  std::vector<PolicyRequest> parsed_;  // requests completed by one onData call
  std::vector<PolicyRequest> queue_;   // received, not yet decided from queue_[head_] on
  std::size_t head_ = 0;
  std::string action_;   // the action of a request decided at once (buffer reused)
  std::string reply_;    // the reply being sent (buffer reused)
  bool busy_ = false;    // a decision is in flight
  bool inCall_ = false;  // inside decideRequest (a callback now is synchronous)
};

}  // namespace

namespace {

// One admin request line, one reply line (admin_protocol.h).
class AdminHandler : public ConnectionHandler {
 public:
  explicit AdminHandler(PolicyService* service) : service_(service) {}

  void onData(Connection& conn, InputBuffer& input) override {
    while (conn.isOpen()) {
      const std::size_t eol = input.view().find('\n');
      if (eol == std::string_view::npos) {
        if (input.size() > kMaxAdminLine) {
          conn.send("error request longer than " + std::to_string(kMaxAdminLine) + " bytes\n");
          conn.closeAfterWrite();
        }
        return;
      }
      std::string line(input.data(), eol);
      input.consume(eol + 1);
      StatusOr<AdminCommand> command = parseAdminCommand(line);
      conn.send(command.isOk() ? service_->admin(*command)
                               : "error " + command.status().message() + "\n");
    }
  }

 private:
  PolicyService* service_;
};

class AdminService : public Service {
 public:
  explicit AdminService(PolicyService* policy) : policy_(policy) {}
  DaemonSection section() const override { return DaemonSection::kPolicy; }
  bool configure(const std::shared_ptr<const Config>&, Diagnostics*, bool) override { return true; }
  ServerLimits limits() const override {
    ServerLimits limits;
    limits.maxInputBytes = kMaxAdminLine * 2;
    limits.maxConnections = 16;
    return limits;
  }
  std::unique_ptr<ConnectionHandler> newConnection(Connection&) override {
    return std::make_unique<AdminHandler>(policy_);
  }

 private:
  PolicyService* policy_;
};

}  // namespace

bool PolicyService::configure(const std::shared_ptr<const Config>& config, Diagnostics* diags,
                              bool install) {
  std::shared_ptr<const PolicyConfig> policy;
  if (install) {
    std::lock_guard<std::mutex> lock(compiledMutex_);
    if (compiledFrom_.lock() == config) {
      policy = std::move(compiled_);
    }
    compiled_.reset();
    compiledFrom_.reset();
  }
  if (policy == nullptr) {
    policy = parsePolicyConfig(*config, diags);
  }
  if (policy == nullptr) {
    return false;
  }
  if (!install) {
    std::lock_guard<std::mutex> lock(compiledMutex_);
    compiledFrom_ = config;
    compiled_ = policy;
  }
  if (install) {
    if (std::shared_ptr<const PolicyConfig> old = config_.get()) {
      const RedisStoreSettings& a = old->redis;
      const RedisStoreSettings& b = policy->redis;
      if (old->useRedis != policy->useRedis ||
          (policy->useRedis &&
           (a.host != b.host || a.port != b.port || a.unixPath != b.unixPath ||
            a.database != b.database || a.username != b.username || a.sentinels != b.sentinels ||
            a.masterName != b.masterName || a.sentinelUsername != b.sentinelUsername ||
            a.sentinelPassword != b.sentinelPassword || a.password != b.password ||
            a.timeoutMs != b.timeoutMs || a.keyPrefix != b.keyPrefix))) {
        logWarning("policy store or redis: settings changed: they take effect after a restart");
      }
    }
    if (!policy->adminSocket.empty() && adminPath_.empty()) {
      StatusOr<Endpoint> endpoint = Endpoint::parse("unix:" + policy->adminSocket);
      ListenOptions options;
      options.socketMode = 0600;  // root (the CLI) only; bound before privileges are dropped
      StatusOr<int> fd =
          endpoint.isOk() ? openListener(*endpoint, options) : StatusOr<int>(endpoint.status());
      if (!fd.isOk()) {
        diags->error(SourceLocation{config->file, 0, 0},
                     "policy admin_socket: " + fd.status().message());
        return false;
      }
      adminFd_ = *fd;
      adminPath_ = policy->adminSocket;
    } else if (policy->adminSocket != adminPath_) {
      logWarning("policy admin_socket changed: it takes effect after a restart");
    }
    std::shared_ptr<const PolicyConfig> old = config_.get();
    config_.set(policy);
    retire(std::move(old));
  }
  return true;
}

void PolicyService::retire(std::shared_ptr<const PolicyConfig> old) {
  // Freeing a snapshot with a large allowance index costs milliseconds (munmap): when nothing
  // else holds it (no decision in flight), it is freed on a thread of its own, not the loop.
  if (old == nullptr || old.use_count() != 1) {
    return;
  }
  if (retirer_.joinable()) {
    retirer_.join();  // the previous one: long done, reloads are seconds apart
  }
  retirer_ = std::thread([old = std::move(old)]() mutable { old.reset(); });
}

PolicyService::~PolicyService() {
  if (retirer_.joinable()) {
    retirer_.join();
  }
}

Status PolicyService::start(event_base* base, MetricsRegistry* metrics) {
  requests_ =
      &metrics->counter("relaykit_policy_requests_total", "Policy requests by stage", {"stage"});
  answers_ = &metrics->counter(
      "relaykit_policy_answers_total",
      "Policy answers by kind (dunno, filter, refused, store_error_open, store_error_closed)",
      {"answer"});
  limitHits_ = &metrics->counter("relaykit_policy_limit_exceeded_total",
                                 "Limits exceeded, by limit and mode (enforce, warn_only)",
                                 {"limit", "mode"});
  errors_ = &metrics->counter("relaykit_policy_errors_total",
                              "Problems by kind (malformed, truncated, flood, store)", {"kind"});
  latency_ = &metrics->histogram("relaykit_policy_decision_seconds",
                                 "Time to decide one policy request", {"store"});
  connections_ = &metrics->gauge("relaykit_policy_connections", "Open policy connections").get();
  std::shared_ptr<const PolicyConfig> config = config_.get();
  if (config->useRedis) {
    auto redis = std::make_unique<RedisStore>(base, config->redis);
    redis_ = redis.get();
    redis->start();
    store_ = std::move(redis);
    storeName_ = "redis";
    metricsTimer_ = event_new(base, -1, EV_PERSIST, &PolicyService::onMetricsTimer, this);
    const timeval second{1, 0};
    event_add(metricsTimer_, &second);
    redisUp_ = &metrics->gauge("relaykit_policy_redis_up", "1 while connected to Redis").get();
    redisTimeouts_ = &metrics
                          ->counter("relaykit_policy_redis_timeouts_total",
                                    "Redis decisions that hit timeout_ms")
                          .get();
    redisConnects_ = &metrics
                          ->counter("relaykit_policy_redis_connects_total",
                                    "Successful Redis connections (reconnects included)")
                          .get();
    if (!config->redis.sentinels.empty()) {
      redisFailovers_ = &metrics
                             ->counter("relaykit_policy_redis_failovers_total",
                                       "Changes of the Redis primary reported by the sentinels")
                             .get();
      redisPrimary_ = &metrics->gauge("relaykit_policy_redis_primary",
                                      "1 for the Redis primary in use (sentinels)", {"address"});
      redisNoPrimary_ = &metrics
                             ->gauge("relaykit_policy_redis_no_primary_seconds",
                                     "Seconds since the connection to a Redis primary was lost "
                                     "(0 while connected)")
                             .get();
    }
    const RedisStoreSettings& r = config->redis;
    std::string sentinels;
    for (const auto& [host, port] : r.sentinels) {
      sentinels += (sentinels.empty() ? "" : ",") + host + ":" + std::to_string(port);
    }
    logInfo("rate-limit store: redis " +
            (!r.sentinels.empty()
                 ? "primary of \"" + r.masterName + "\" from sentinels " + sentinels
             : r.unixPath.empty() ? "at " + r.host + ":" + std::to_string(r.port)
                                  : "at unix:" + r.unixPath) +
            ", timeout " + std::to_string(r.timeoutMs) + " ms, on_store_error " +
            (config->failOpen ? "open" : "closed"));
  } else {
    auto memory = std::make_unique<MemoryStore>();
    memory_ = memory.get();
    store_ = std::move(memory);
    logInfo("rate-limit store: memory (this relay only)");
  }
  if (adminFd_ >= 0) {
    adminService_ = std::make_unique<AdminService>(this);
    adminServer_ = std::make_unique<Server>(base, adminService_.get(), adminService_->limits());
    Status listening = adminServer_->addListener(adminFd_, "admin unix:" + adminPath_);
    if (!listening.isOk()) {
      return listening;
    }
    adminFd_ = -1;  // the server owns it now
    logInfo("limits admin socket: unix:" + adminPath_);
  }
  alerts_ = std::make_unique<AlertNotifier>(metrics, redis_);
  for (Stage stage : {Stage::kRcpt, Stage::kData, Stage::kEndOfMessage, Stage::kOther}) {
    stageRequests_[static_cast<int>(stage)] = &requests_->labels({stageLabel(stage)});
  }
  answerDunno_ = &answers_->labels({"dunno"});
  answerFilter_ = &answers_->labels({"filter"});
  answerRefused_ = &answers_->labels({"refused"});
  latencySeries_ = &latency_->labels({storeName_});
  return Status::ok();
}

void PolicyService::onMetricsTimer(evutil_socket_t, short, void* arg) {
  static_cast<PolicyService*>(arg)->syncRedisMetrics();
}

void PolicyService::stop() {
  if (metricsTimer_ != nullptr) {
    event_free(metricsTimer_);
    metricsTimer_ = nullptr;
  }
  adminServer_.reset();
  if (alerts_ != nullptr) {
    alerts_->detachStore();  // claims the Redis store answers below are not alerted
  }
  store_.reset();   // a Redis store answers its pending decisions with an error now
  alerts_.reset();  // kills a running sendmail
  redis_ = nullptr;
  memory_ = nullptr;
}

Health PolicyService::health() const {
  if (redis_ == nullptr || redis_->stats().connected) {
    return Health::ok();
  }
  const RedisStoreSettings& r = redis_->settings();
  const RedisStoreStats& stats = redis_->stats();
  const std::string where =
      !r.sentinels.empty()
          ? "primary of \"" + r.masterName + "\"" +
                (stats.primary.empty() ? ", none known" : ", last " + stats.primary)
      : r.unixPath.empty() ? r.host + ":" + std::to_string(r.port)
                           : "unix:" + r.unixPath;
  std::shared_ptr<const PolicyConfig> config = config_.get();
  if (config != nullptr && config->failOpen) {
    return Health::degraded("store unreachable (redis at " + where +
                            "); on_store_error: open, rate limits not enforced");
  }
  return Health::unavailable("store unreachable (redis at " + where +
                             "); on_store_error: closed, limited mail is deferred");
}

ServerLimits PolicyService::limits() const {
  ServerLimits limits;
  limits.idleTimeout = kPolicyIdleTimeout;
  limits.maxInputBytes = kMaxRequestBytes * 2;
  return limits;
}

std::string PolicyService::admin(const AdminCommand& command) {
  if (memory_ == nullptr) {
    return "error the store is redis: relaykit limits talks to Redis itself\n";
  }
  if (command.kind == AdminCommand::Kind::kReset || command.kind == AdminCommand::Kind::kResetAll) {
    std::string line = formatAdminCommand(command);
    line.pop_back();  // the newline
    logInfo("limits: " + line.substr(0, 200) + " (admin socket)");
  }
  return executeAdminCommand(*memory_, command);
}

std::vector<WatchedFile> PolicyService::watchedFiles() const {
  std::vector<WatchedFile> out;
  if (std::shared_ptr<const PolicyConfig> config = config_.get()) {
    for (const LimitRule& rule : config->limits) {
      if (rule.allowances != nullptr) {
        out.insert(out.end(), rule.allowances->files().begin(), rule.allowances->files().end());
      }
    }
  }
  return out;
}

std::unique_ptr<ConnectionHandler> PolicyService::newConnection(Connection&) {
  return std::make_unique<PolicyHandler>(this);
}

void PolicyService::countProtocolError(const char* kind) {
  if (errors_ != nullptr) {
    errors_->labels({kind}).inc();
  }
}

void PolicyService::syncRedisMetrics() {
  if (redis_ == nullptr || redisUp_ == nullptr) {
    return;
  }
  const RedisStoreStats& s = redis_->stats();
  redisUp_->set(s.connected ? 1 : 0);
  redisTimeouts_->inc(s.timeouts - seenTimeouts_);
  redisConnects_->inc(s.connects - seenConnects_);
  seenTimeouts_ = s.timeouts;
  seenConnects_ = s.connects;
  if (redisFailovers_ != nullptr) {
    redisFailovers_->inc(s.failovers - seenFailovers_);
    seenFailovers_ = s.failovers;
    if (s.primary != shownPrimary_) {
      if (!shownPrimary_.empty()) {
        redisPrimary_->labels({shownPrimary_}).set(0);
      }
      redisPrimary_->labels({s.primary}).set(1);
      shownPrimary_ = s.primary;
    }
    // From the moment the store lost its primary, not from this (once a second) update.
    redisNoPrimary_->set(s.connected ? 0.0
                                     : std::chrono::duration<double>(
                                           std::chrono::steady_clock::now() - s.disconnectedAt)
                                           .count());
  }
}

void PolicyService::logStoreError(const std::string& line) {
  // While Redis is down every request fails: one line per second, with how many were not logged.
  storeErrorLog_.log(line);
}

void PolicyService::rememberRecipient(const std::string& instance, const std::string& recipient) {
  const RecipientTracker::Result result = recipients_.remember(instance, recipient);
  if (result == RecipientTracker::Result::kMessageFull) {
    countProtocolError("untracked_recipients");
    logWarning("message instance " + instance.substr(0, 64) + ": more than " +
               std::to_string(kMaxTrackedRecipients) + " recipients or " +
               std::to_string(kMaxTrackedBytesPerMessage) +
               " bytes of them; the rest are not charged to recipient-keyed limits");
  }
  // Evictions come in floods (one per new message while full): one line per second at most.
  const auto now = std::chrono::steady_clock::now();
  if (recipients_.evicted() != seenEvictions_ && now - lastEvictionLog_ >= kStoreErrorLogInterval) {
    countProtocolError("untracked_recipients");
    logWarning("open messages tracked beyond " + std::to_string(kMaxTrackedInstances) + " or " +
               std::to_string(kMaxTrackedBytes) + " bytes: forgot the recipients of " +
               std::to_string(recipients_.evicted() - seenEvictions_) + " oldest message(s)");
    seenEvictions_ = recipients_.evicted();
    lastEvictionLog_ = now;
  }
}

bool PolicyService::decideRequest(PolicyRequest& request, std::string* action,
                                  const std::function<Reply()>& later) {
  const auto started = std::chrono::steady_clock::now();
  std::shared_ptr<const PolicyConfig> config = config_.get();
  const Stage stage = stageOf(request);
  if (Counter* c = stageRequests_[static_cast<int>(stage)]) {
    c->inc();
  }
  std::vector<std::string> accepted;
  bool haveAccepted = false;
  if (config->tracksRecipients && stage != Stage::kRcpt) {
    TrackedRecipients tracked;
    if (stage == Stage::kEndOfMessage) {
      haveAccepted = recipients_.take(request.get(Attribute::kInstance), &tracked);
      accepted = std::move(tracked.recipients);
    } else if (const TrackedRecipients* t = recipients_.find(request.get(Attribute::kInstance))) {
      accepted = t->recipients;
      haveAccepted = true;
    }
  }
  Plan& plan = plan_;  // reused: its buffers serve every request
  planRequest(*config, request, haveAccepted ? &accepted : nullptr, &plan);
  if (plan.store.charges.empty() || store_ == nullptr) {
    Verdict verdict;
    verdict.action = plan.filter.empty() ? "DUNNO" : plan.filter;
    finish(*config, request, plan, verdict, started);
    action->assign(verdict.action);
    return true;
  }
  if (memory_ != nullptr) {  // answers at once: nothing needs to outlive this call
    action->assign(complete(*config, request, plan, memory_->evaluateNow(plan.store), started));
    return true;
  }
  auto req = std::make_shared<PolicyRequest>(std::move(request));
  auto shared = std::make_shared<Plan>(std::move(plan));
  store_->evaluate(shared->store, [this, config, req, shared, started,
                                   reply = later()](StatusOr<StoreResult> result) {
    reply(complete(*config, *req, *shared, result, started));
  });
  return false;
}

std::string PolicyService::complete(const PolicyConfig& config, const PolicyRequest& request,
                                    const Plan& plan, const StatusOr<StoreResult>& result,
                                    std::chrono::steady_clock::time_point started) {
  Verdict verdict;
  if (result.isOk()) {
    verdict = decide(config, request, plan, *result);
  } else {
    countProtocolError("store");
    verdict = decideOnStoreError(config, plan, result.status());
    if (answers_ != nullptr) {
      answers_->labels({config.failOpen ? "store_error_open" : "store_error_closed"}).inc();
    }
  }
  syncRedisMetrics();
  finish(config, request, plan, verdict, started);
  return std::move(verdict.action);
}

void PolicyService::finish(const PolicyConfig& config, const PolicyRequest& request,
                           const Plan& plan, const Verdict& verdict,
                           std::chrono::steady_clock::time_point started) {
  for (const std::string& line : verdict.logs) {
    if (verdict.storeError) {
      logStoreError(line);
    } else {
      logInfo(line);
    }
  }
  if (answerDunno_ != nullptr) {
    if (!verdict.storeError) {
      Counter* answer = verdict.refused                           ? answerRefused_
                        : verdict.action.rfind("FILTER ", 0) == 0 ? answerFilter_
                                                                  : answerDunno_;
      answer->inc();
    }
    for (const LimitHit& hit : verdict.hits) {
      limitHits_->labels({hit.limit, hit.warnOnly ? "warn_only" : "enforce"}).inc();
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
    latencySeries_->observe(elapsed.count());
  }
  if (!verdict.hits.empty() && alerts_ != nullptr) {
    alerts_->onTrips(config, request, plan, verdict);
  }
  if (plan.stage == Stage::kRcpt && !verdict.refused && config.tracksRecipients) {
    rememberRecipient(std::string(request.get(Attribute::kInstance)),
                      std::string(request.get(Attribute::kRecipient)));
  }
}

}  // namespace relaykit::policy

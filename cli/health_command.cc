// SPDX-License-Identifier: Apache-2.0
// health_command.cc: `relaykit health -c FILE`: a Nagios/Icinga plugin (and keepalived
// track_script) for the whole relay, in one run:
//  - each configured daemon: GET /health on its metrics_listen (200 "ok" OK, 200 "degraded: ..."
//    WARNING, 503 CRITICAL), or, without metrics_listen, a connect to its listener;
//  - Redis, when relaykit-policyd's store is redis: AUTH (password file) + PING; down is WARNING
//    with on_store_error: open (limits unenforced), CRITICAL with closed (mail deferred);
//  - Postfix: its master runs (queue_directory/pid/master.pid), and its queue from
//    `postqueue -j`: size, deferred count, oldest age against thresholds;
//  - the smarthost (health.smarthost.address, else main.cf's relayhost): TCP connect, 220
//    greeting, EHLO, STARTTLS offered when TLS is required.
// Output: one line "STATE - relaykit: SUMMARY | PERFDATA", then one line per check. Exit 0 OK,
// 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the configuration cannot be read, a probe cannot run).
// Every probe is bounded by health.timeout; external programs run by fork/exec, no shell.
// Secrets (the Redis password) never appear in the output.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cli/commands.h"
#include "cli/health_config.h"
#include "cli/health_probes.h"
#include "cli/postfix_wiring.h"
#include "common/config.h"
#include "common/run_program.h"
#include "policyd/policy_config.h"

namespace relaykit {

namespace {

// The SMTPS port (TLS from the first byte): only a TCP connect is probed there.
constexpr std::uint16_t kSmtpsPort = 465;

// Nagios plugin states, which are also the exit codes.
enum class State { kOk = 0, kWarning = 1, kCritical = 2, kUnknown = 3 };

const char* stateName(State s) {
  switch (s) {
    case State::kOk:
      return "OK";
    case State::kWarning:
      return "WARNING";
    case State::kCritical:
      return "CRITICAL";
    case State::kUnknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

// Which of two states a combined result shows: CRITICAL, then UNKNOWN, then WARNING, then OK.
int rank(State s) {
  switch (s) {
    case State::kOk:
      return 0;
    case State::kWarning:
      return 1;
    case State::kUnknown:
      return 2;
    case State::kCritical:
      return 3;
  }
  return 2;
}

struct CheckResult {
  std::string name;
  State state = State::kOk;
  std::string detail;
};

struct HealthOptions {
  std::string configPath = kDefaultConfigPath;
  std::string postfixDir;
  std::optional<double> timeoutSeconds;
  std::optional<std::int64_t> queueWarning, queueCritical;
  std::optional<std::int64_t> deferredWarning, deferredCritical;
  std::optional<std::int64_t> oldestWarning, oldestCritical;
  std::string smarthost;
  bool noQueue = false;
  bool noSmarthost = false;
  bool criticalOnly = false;
};

class HealthRun {
 public:
  HealthRun(const HealthOptions& options, const Config& config, const HealthConfig& health)
      : options_(options), config_(config), health_(health) {}

  void checkDaemon(const char* name, const DaemonSettings& daemon);
  void checkRedis(const policy::PolicyConfig& policy);
  void checkQueue();
  void checkSmarthost();
  int finish();

 private:
  Deadline deadline() const { return std::chrono::steady_clock::now() + health_.timeout; }
  void add(std::string name, State state, std::string detail) {
    results_.push_back({std::move(name), state, std::move(detail)});
  }
  void perf(const std::string& label, const std::string& value, const Thresholds* t = nullptr,
            const char* unit = "") {
    std::string text = label + "=" + value + unit;
    if (t != nullptr) {
      text += ";" + (t->warning > 0 ? std::to_string(t->warning) : std::string()) + ";" +
              (t->critical > 0 ? std::to_string(t->critical) : std::string()) + ";0";
    }
    perf_.push_back(text);
  }
  StatusOr<std::map<std::string, std::string>> postconfValues(
      const std::vector<std::string>& names);

  const HealthOptions& options_;
  const Config& config_;
  const HealthConfig& health_;
  std::vector<CheckResult> results_;
  std::vector<std::string> perf_;
};

Endpoint reachableEndpoint(Endpoint ep) {
  if (ep.kind == Endpoint::Kind::kInet && (ep.host.empty() || ep.host == "0.0.0.0")) {
    ep.host = "127.0.0.1";
  } else if (ep.kind == Endpoint::Kind::kInet && ep.host == "::") {
    ep.host = "::1";
  }
  return ep;
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string formatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s);
  return buf;
}

// The state of `value` against thresholds (>= alerts; 0 is off).
State against(std::int64_t value, const Thresholds& t) {
  if (t.critical > 0 && value >= t.critical) {
    return State::kCritical;
  }
  if (t.warning > 0 && value >= t.warning) {
    return State::kWarning;
  }
  return State::kOk;
}

void HealthRun::checkDaemon(const char* name, const DaemonSettings& daemon) {
  const std::string label = std::string(name);
  const auto started = std::chrono::steady_clock::now();
  if (daemon.metricsListen) {
    const Endpoint ep = reachableEndpoint(*daemon.metricsListen);
    auto health = fetchHealth(ep, deadline());
    if (!health) {
      add(label, State::kCritical, "/health: " + health.status().message());
      perf(label + "_health", "2");
      return;
    }
    State state = State::kCritical;
    if (health->status == 200) {
      state = health->body.rfind("degraded", 0) == 0 ? State::kWarning : State::kOk;
    }
    add(label, state,
        health->body.empty() ? "HTTP " + std::to_string(health->status) : health->body);
    perf(label + "_health", std::to_string(static_cast<int>(state)));
    perf(label + "_time", formatSeconds(secondsSince(started)), nullptr, "s");
    return;
  }
  const Endpoint ep = reachableEndpoint(daemon.listen.front());
  auto s = ProbeSocket::connect(ep, deadline());
  if (!s) {
    add(label, State::kCritical, "not accepting: " + s.status().message());
    perf(label + "_health", "2");
    return;
  }
  add(label, State::kOk, "accepting on " + ep.toString() + " (no metrics_listen: no /health)");
  perf(label + "_health", "0");
}

void HealthRun::checkRedis(const policy::PolicyConfig& policy) {
  RedisTarget target;
  if (!policy.redis.unixPath.empty()) {
    target.endpoint.kind = Endpoint::Kind::kUnix;
    target.endpoint.path = policy.redis.unixPath;
  } else {
    target.endpoint.host = policy.redis.host;
    target.endpoint.port = static_cast<std::uint16_t>(policy.redis.port);
  }
  target.password = policy.redis.password;
  target.database = policy.redis.database;
  const auto started = std::chrono::steady_clock::now();
  Status st = pingRedis(target, deadline());
  if (st) {
    add("redis", State::kOk, "PONG from " + target.endpoint.toString());
    perf("redis_time", formatSeconds(secondsSince(started)), nullptr, "s");
    return;
  }
  const std::string why = target.endpoint.toString() + ": " + st.message();
  if (policy.failOpen) {
    add("redis", State::kWarning, why + " (on_store_error: open: rate limits are not enforced)");
  } else {
    add("redis", State::kCritical, why + " (on_store_error: closed: relaykit-policyd defers mail)");
  }
}

StatusOr<std::map<std::string, std::string>> HealthRun::postconfValues(
    const std::vector<std::string>& names) {
  std::vector<std::string> argv = {"postconf", "-c", postfixConfigDir(options_.postfixDir)};
  argv.insert(argv.end(), names.begin(), names.end());
  auto result = runProgram(argv, health_.timeout);
  if (!result) {
    return result.status();
  }
  if (result->exitCode != 0 || result->timedOut) {
    return Status::error("postconf: " + result->describeFailure());
  }
  return parsePostconf(result->out);
}

// Whether Postfix's master runs: queue_directory/pid/master.pid names a live "master".
// (postqueue run by root reads the queue directly when the mail system is down.)
std::string masterProblem(const std::string& queueDirectory) {
  const std::string pidFile = queueDirectory + "/pid/master.pid";
  std::ifstream in(pidFile);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) {
    return "not running (no " + pidFile + ")";
  }
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!std::getline(comm, name) || name != "master") {
    return "not running (" + pidFile + " names pid " + std::to_string(pid) +
           ", which is not Postfix's master)";
  }
  return std::string();
}

void HealthRun::checkQueue() {
  const std::string dir = postfixConfigDir(options_.postfixDir);
  auto values = postconfValues({"queue_directory"});
  if (!values) {
    add("postfix", State::kUnknown, values.status().message());
    return;
  }
  const std::string problem = masterProblem((*values)["queue_directory"]);
  if (!problem.empty()) {
    add("postfix", State::kCritical, problem);
    return;
  }
  auto result = runProgram({"postqueue", "-c", dir, "-j"}, health_.timeout);
  if (!result) {
    add("queue", State::kUnknown, "cannot run postqueue: " + result.status().message());
    return;
  }
  if (result->exitCode != 0 || result->timedOut) {
    // "fatal: Queue report unavailable - mail system is down": Postfix is not running.
    add("queue", State::kCritical, "postqueue -c " + dir + " -j: " + result->describeFailure());
    return;
  }
  auto stats = result->truncated ? std::nullopt : parsePostqueueJson(result->out);
  if (!stats) {
    add("queue", State::kUnknown, "cannot read postqueue -j output");
    return;
  }
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  const std::int64_t oldest =
      stats->oldestArrival ? std::max<std::int64_t>(0, now - *stats->oldestArrival) : 0;
  State state = State::kOk;
  std::vector<std::string> over;
  for (auto [what, value, t] : {std::tuple<const char*, std::int64_t, const Thresholds*>{
                                    "queue size", stats->size, &health_.queueSize},
                                {"deferred", stats->deferred, &health_.deferred},
                                {"oldest age (s)", oldest, &health_.oldestSeconds}}) {
    State s = against(value, *t);
    if (s != State::kOk) {
      over.push_back(std::string(what) + " " + std::to_string(value) +
                     " >= " + std::to_string(s == State::kCritical ? t->critical : t->warning));
      if (rank(s) > rank(state)) {
        state = s;
      }
    }
  }
  std::string detail = std::to_string(stats->size) + " message(s), " +
                       std::to_string(stats->deferred) + " deferred, oldest " +
                       std::to_string(oldest) + "s";
  if (!over.empty()) {
    detail += " (";
    for (std::size_t i = 0; i < over.size(); ++i) {
      detail += (i ? ", " : "") + over[i];
    }
    detail += ")";
  }
  add("queue", state, detail);
  perf("queue", std::to_string(stats->size), &health_.queueSize);
  perf("deferred", std::to_string(stats->deferred), &health_.deferred);
  perf("oldest", std::to_string(oldest), &health_.oldestSeconds, "s");
}

void HealthRun::checkSmarthost() {
  std::string address = !options_.smarthost.empty() ? options_.smarthost : health_.smarthost;
  std::string securityLevel;
  if (address.empty() || health_.startTls == HealthConfig::StartTls::kAuto) {
    auto values = postconfValues({"relayhost", "smtp_tls_security_level"});
    if (!values) {
      add("smarthost", State::kUnknown, values.status().message());
      return;
    }
    if (address.empty()) {
      address = (*values)["relayhost"];
    }
    securityLevel = (*values)["smtp_tls_security_level"];
  }
  if (address.empty()) {
    add("smarthost", State::kOk, "no relayhost: mail goes to each domain's MX, nothing to probe");
    return;
  }
  auto ep = parseRelayhost(address);
  if (!ep) {
    add("smarthost", State::kUnknown, "cannot parse relayhost \"" + address + "\"");
    return;
  }
  bool tlsRequired = health_.startTls == HealthConfig::StartTls::kRequired;
  if (health_.startTls == HealthConfig::StartTls::kAuto) {
    for (const char* level : {"encrypt", "dane-only", "fingerprint", "verify", "secure"}) {
      tlsRequired = tlsRequired || securityLevel == level;
    }
  }
  std::string helo = health_.helo;
  if (helo.empty()) {
    char host[256] = {0};
    helo = gethostname(host, sizeof host - 1) == 0 && host[0] != '\0' ? host : "localhost";
  }
  const auto started = std::chrono::steady_clock::now();
  if (ep->port == kSmtpsPort) {
    // TLS-wrapped SMTP (smtp_tls_wrappermode): the greeting comes inside TLS; connect only.
    auto s = ProbeSocket::connect(*ep, deadline());
    if (!s) {
      add("smarthost", State::kCritical, address + ": " + s.status().message());
      return;
    }
    perf("smarthost_time", formatSeconds(secondsSince(started)), nullptr, "s");
    add("smarthost", State::kOk,
        address + ": connected (port 465: TLS-wrapped, not probed further)");
    return;
  }
  auto probe = probeSmtp(*ep, helo, deadline());
  if (!probe) {
    add("smarthost", State::kCritical, address + ": " + probe.status().message());
    return;
  }
  perf("smarthost_time", formatSeconds(secondsSince(started)), nullptr, "s");
  if (tlsRequired && !probe->startTls) {
    add("smarthost", State::kCritical,
        address + ": STARTTLS not offered, and TLS is required (" +
            (health_.startTls == HealthConfig::StartTls::kRequired
                 ? std::string("health.smarthost.starttls: required")
                 : "smtp_tls_security_level = " + securityLevel) +
            ")");
    return;
  }
  add("smarthost", State::kOk,
      address + ": " + probe->greeting + (probe->startTls ? " (STARTTLS offered)" : ""));
}

int HealthRun::finish() {
  State worst = State::kOk;
  for (const auto& r : results_) {
    if (rank(r.state) > rank(worst)) {
      worst = r.state;
    }
  }
  std::string summary;
  for (const auto& r : results_) {
    if (worst == State::kOk || r.state != State::kOk) {
      if (!summary.empty()) {
        summary += worst == State::kOk ? ", " : "; ";
      }
      summary += worst == State::kOk ? r.name : r.name + ": " + r.detail;
    }
  }
  if (worst == State::kOk) {
    summary = results_.empty() ? "nothing to check" : summary + " ok";
  }
  std::string perfText;
  for (const auto& p : perf_) {
    perfText += (perfText.empty() ? "" : " ") + p;
  }
  std::printf("%s - relaykit: %s%s%s\n", stateName(worst), summary.c_str(),
              perfText.empty() ? "" : " | ", perfText.c_str());
  for (const auto& r : results_) {
    std::printf("%s: %s: %s\n", r.name.c_str(), stateName(r.state), r.detail.c_str());
  }
  if (options_.criticalOnly && worst == State::kWarning) {
    return 0;
  }
  return static_cast<int>(worst);
}

int unknown(const std::string& why) {
  std::printf("UNKNOWN - relaykit: %s\n", why.c_str());
  return static_cast<int>(State::kUnknown);
}

int runHealth(const HealthOptions& options) {
  Diagnostics diags;
  auto config = loadConfig(options.configPath, &diags);
  if (config == nullptr) {
    std::string text = diags.formatAll();
    std::fwrite(text.data(), 1, text.size(), stderr);
    return unknown("configuration " + options.configPath + " refused (problems on stderr)");
  }
  auto health = parseHealthConfig(*config, &diags);
  std::shared_ptr<const policy::PolicyConfig> policy;
  if (config->policy.present) {
    policy = policy::parsePolicyConfig(*config, &diags);
  }
  if (!health || diags.hasErrors()) {
    std::string text = diags.formatAll();
    std::fwrite(text.data(), 1, text.size(), stderr);
    return unknown("configuration " + options.configPath + " refused (problems on stderr)");
  }
  if (options.timeoutSeconds) {
    if (*options.timeoutSeconds <= 0 || *options.timeoutSeconds > 60) {
      return unknown("--timeout must be more than 0 and at most 60 seconds");
    }
    health->timeout = std::chrono::milliseconds(static_cast<int>(*options.timeoutSeconds * 1000));
  }
  auto override = [](const std::optional<std::int64_t>& v, std::int64_t* target) {
    if (v) {
      *target = *v;
    }
  };
  override(options.queueWarning, &health->queueSize.warning);
  override(options.queueCritical, &health->queueSize.critical);
  override(options.deferredWarning, &health->deferred.warning);
  override(options.deferredCritical, &health->deferred.critical);
  override(options.oldestWarning, &health->oldestSeconds.warning);
  override(options.oldestCritical, &health->oldestSeconds.critical);

  HealthRun run(options, *config, *health);
  if (config->socketmap.present || !config->tables.empty()) {
    run.checkDaemon("socketmap", config->socketmap);
  }
  if (config->milter.present) {
    run.checkDaemon("milter", config->milter);
  }
  if (config->policy.present) {
    run.checkDaemon("policy", config->policy);
    if (policy != nullptr && policy->useRedis) {
      run.checkRedis(*policy);
    }
  }
  if (health->checkQueue && !options.noQueue) {
    run.checkQueue();
  }
  if (health->checkSmarthost && !options.noSmarthost) {
    run.checkSmarthost();
  }
  return run.finish();
}

}  // namespace

void addHealthCommand(CLI::App& app, int* exitCode) {
  auto o = std::make_shared<HealthOptions>();
  CLI::App* sub = app.add_subcommand(
      "health",
      "check the whole relay as a Nagios/Icinga plugin: daemons' /health, Redis, Postfix's "
      "queue, the smarthost; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN");
  sub->add_option("-c,--config", o->configPath, "relaykit configuration file")
      ->capture_default_str();
  sub->add_option("-C,--postfix-config", o->postfixDir,
                  "Postfix configuration directory (default: $MAIL_CONFIG, else /etc/postfix)");
  sub->add_option("-t,--timeout", o->timeoutSeconds,
                  "seconds allowed to each probe (health.timeout, default 3)");
  sub->add_option("--queue-warning", o->queueWarning, "messages in the queue (0: off)");
  sub->add_option("--queue-critical", o->queueCritical, "messages in the queue (0: off)");
  sub->add_option("--deferred-warning", o->deferredWarning, "deferred messages (0: off)");
  sub->add_option("--deferred-critical", o->deferredCritical, "deferred messages (0: off)");
  sub->add_option("--oldest-warning", o->oldestWarning, "age of the oldest message, seconds");
  sub->add_option("--oldest-critical", o->oldestCritical, "age of the oldest message, seconds");
  sub->add_option("--smarthost", o->smarthost,
                  "smarthost to probe, as relayhost is written (default: health.smarthost."
                  "address, else main.cf's relayhost)");
  sub->add_flag("--no-queue", o->noQueue, "skip the Postfix queue check");
  sub->add_flag("--no-smarthost", o->noSmarthost, "skip the smarthost check");
  sub->add_flag("--critical-only", o->criticalOnly,
                "exit 0 on WARNING (for a keepalived track_script: fail over only when the relay "
                "cannot work)");
  sub->callback([o, exitCode] { *exitCode = runHealth(*o); });
}

}  // namespace relaykit

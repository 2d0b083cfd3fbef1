// milter_callbacks.cc: relaykit's milter filter, wiring the pure rewrite engine to Postfix.
//
// Protocol facts honoured here (postfix-facts.md): modifications only at end of message; only the
// steps the configuration needs are negotiated, with the no-reply flags and SMFIP_HDR_LEADSPC;
// macros are read at the stage where Postfix sends them ({auth_authen} at MAIL FROM, i at EOM);
// state is reset per message (MAIL FROM, abort - possibly twice -, EOM) and at the end of the
// SMTP session.
#include "milters/milter_callbacks.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/server/logging.h"
#include "milters/message_rewriter.h"

namespace relaykit::milter {
namespace {

// Bounds on what one message may make us hold in memory; past them the message passes unchanged.
// Postfix itself has no header count limit (only message_size_limit, 10240000 by default, and
// header_size_limit per header): these stay above what a default Postfix accepts in practice.
constexpr size_t kMaxRecipients = 10000;

std::shared_ptr<const MilterConfig> gConfig;  // accessed with std::atomic_load/store

// The series are looked up once (a label lookup takes the family's mutex).
struct Metrics {
  Counter* changed = nullptr;  // relaykit_milter_messages_total{result=...}
  Counter* unchanged = nullptr;
  Counter* error = nullptr;
  Counter* skipped = nullptr;
  Counter* changes = nullptr;  // relaykit_milter_changes_total{kind="all"}
  Histogram* eomSeconds = nullptr;
};
Metrics gMetrics;

void countMessage(Counter* result) {
  if (result != nullptr) {
    result->inc();
  }
}

std::atomic<int> gActiveMessages{0};

// Test hook: with RELAYKIT_MILTER_FAULT=eom in the environment every message fails at end of
// message as an internal error would, so the on_error path can be tested end to end against a
// real Postfix (no table or rule can fail at run time). Read once; logged at start-up.
bool faultAtEom() {
  static const bool fault = [] {
    const char* v = std::getenv("RELAYKIT_MILTER_FAULT");
    return v != nullptr && std::string(v) == "eom";
  }();
  return fault;
}

std::string stripAngles(std::string_view s) {
  if (s.size() >= 2 && s.front() == '<' && s.back() == '>') {
    s = s.substr(1, s.size() - 2);
  }
  return std::string(s);
}

MilterResponse onErrorResult(const MilterConfig* config) {
  return MilterResponse::of(config && config->onError == OnError::kAccept
                                ? MilterResponse::Verdict::kContinue
                                : MilterResponse::Verdict::kTempfail);
}

const char* onErrorName(const MilterConfig* config) {
  return config && config->onError == OnError::kAccept ? "accept" : "tempfail";
}

}  // namespace

MilterWants relaykitWants(const MilterConfig* cfg) {
  MilterWants wants;
  wants.actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM | SMFIF_SETSYMLIST;
  wants.protocol = SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_CONN |
                   SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_EOH |
                   SMFIP_NR_BODY | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_HDR_LEADSPC;
  if (cfg && !cfg->needsConnect()) {
    wants.protocol |= SMFIP_NOCONNECT;  // one event fewer per SMTP session
  }
  if (!cfg || !cfg->needsHelo()) {
    wants.protocol |= SMFIP_NOHELO;
  }
  if (!cfg || !cfg->needsRecipients()) {
    wants.protocol |= SMFIP_NORCPT;
  }
  if (cfg && !cfg->needsHeaders()) {
    wants.protocol |= SMFIP_NOHDRS;
  }
  // Only the macros we read, at the stage where Postfix has them: fewer bytes on every message.
  // ("j" stands in where we need none: an empty list means "the defaults".)
  wants.macros[SMFIM_CONNECT] = "j";
  wants.macros[SMFIM_HELO] = "j";
  wants.macros[SMFIM_ENVFROM] = "{auth_authen}";
  wants.macros[SMFIM_ENVRCPT] = "j";
  wants.macros[SMFIM_DATA] = "j";
  wants.macros[SMFIM_EOH] = "j";
  wants.macros[SMFIM_EOM] = "i";
  return wants;
}

RelaykitFilter::Message::Message() {
  gActiveMessages.fetch_add(1, std::memory_order_relaxed);
}

RelaykitFilter::Message::~Message() {
  gActiveMessages.fetch_sub(1, std::memory_order_relaxed);
}

RelaykitFilter::RelaykitFilter() : config_(activeConfig()) {}

RelaykitFilter::~RelaykitFilter() = default;

// The newest snapshot whose needs fit the steps negotiated on this connection.
std::shared_ptr<const MilterConfig> RelaykitFilter::snapshotFor(const MilterSession& s) const {
  std::shared_ptr<const MilterConfig> latest = activeConfig();
  if (!latest) {
    return config_;
  }
  if (latest == config_) {
    return latest;
  }
  bool rcptOk = !latest->needsRecipients() || !s.hasProtocol(SMFIP_NORCPT);
  bool heloOk = !latest->needsHelo() || !s.hasProtocol(SMFIP_NOHELO);
  bool hdrOk = !latest->needsHeaders() || !s.hasProtocol(SMFIP_NOHDRS);
  bool connOk = !latest->needsConnect() || !s.hasProtocol(SMFIP_NOCONNECT);
  return rcptOk && heloOk && hdrOk && connOk ? latest : config_;
}

MilterWants RelaykitFilter::negotiate(const OptionNegotiation& offer) {
  (void)offer;
  config_ = activeConfig();
  return relaykitWants(config_.get());
}

MilterResponse RelaykitFilter::connect(const MilterSession& s, const ConnectInfo& info) {
  (void)s;
  try {
    client_ = Envelope();
    client_.clientName.assign(info.hostname);
    if (info.family == SMFIA_INET || info.family == SMFIA_INET6) {
      StatusOr<IpAddress> ip = IpAddress::parse(info.address);
      if (ip) {
        client_.clientAddress = *ip;
      }
    }
  } catch (...) {
    logError("connect: internal error");
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::helo(const MilterSession& s, std::string_view name) {
  (void)s;
  try {
    client_.helo.assign(name);
  } catch (...) {
    logError("helo: internal error");
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::mail(const MilterSession& s,
                                    const std::vector<std::string_view>& args) {
  try {
    message_.reset();
    message_.emplace();
    Message& m = *message_;
    m.config = snapshotFor(s);
    m.envelope.clientAddress = client_.clientAddress;
    m.envelope.clientName = client_.clientName;
    m.envelope.helo = client_.helo;
    m.envelope.sender = stripAngles(args.empty() ? std::string_view() : args[0]);
    for (std::size_t i = 1; i < args.size(); ++i) {
      m.envelope.senderArgs.emplace_back(args[i]);
    }
    if (const std::string* auth = s.macro("{auth_authen}")) {
      m.envelope.saslUser = *auth;
    }
  } catch (...) {
    if (message_) {
      message_->failure = "internal error at MAIL FROM";
    }
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::recipient(const MilterSession& s,
                                         const std::vector<std::string_view>& args) {
  (void)s;
  if (message_) {
    try {
      if (message_->envelope.recipients.size() < kMaxRecipients) {
        message_->envelope.recipients.push_back(
            stripAngles(args.empty() ? std::string_view() : args[0]));
      }
    } catch (...) {
      message_->failure = "internal error at RCPT TO";
    }
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::header(const MilterSession& s, std::string_view name,
                                      std::string_view value) {
  if (!message_ || message_->overflow) {
    return MilterResponse::proceed();
  }
  Message& m = *message_;
  try {
    m.headerBytes += name.size() + value.size();
    if (m.headers.size() >= kMaxMessageHeaders || m.headerBytes > kMaxMessageHeaderBytes) {
      m.overflow = true;
      m.headers.clear();
      m.headers.shrink_to_fit();
    } else {
      HeaderField field;
      field.name.assign(name);
      // Without SMFIP_HDR_LEADSPC (an old MTA), the space after the colon was dropped.
      if (!s.leadingSpace()) {
        field.value.reserve(value.size() + 1);
        field.value.push_back(' ');
      }
      field.value.append(value.data(), value.size());
      m.headers.push_back(std::move(field));
    }
  } catch (...) {
    m.failure = "internal error in header";
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::endOfMessage(const MilterSession& s, MilterModifications* mods) {
  if (!message_) {
    return MilterResponse::proceed();
  }
  auto started = std::chrono::steady_clock::now();
  MilterResponse result = MilterResponse::proceed();
  const MilterConfig* cfg = message_->config.get();
  try {
    Message& m = *message_;
    const std::string* qid = s.macro("i");
    m.envelope.queueId = qid ? *qid : "";
    std::string prefix = (m.envelope.queueId.empty() ? "NOQUEUE" : m.envelope.queueId) + ": ";
    if (faultAtEom() && m.failure.empty()) {
      m.failure = "internal error (injected by RELAYKIT_MILTER_FAULT=eom)";
    }
    if (!m.failure.empty()) {
      logError(prefix + m.failure + "; on_error=" + onErrorName(cfg));
      countMessage(gMetrics.error);
      result = onErrorResult(cfg);
    } else if (m.overflow) {
      logWarning(prefix + "headers larger than " + std::to_string(kMaxMessageHeaderBytes) +
                 " bytes or more than " + std::to_string(kMaxMessageHeaders) +
                 ": message passed unchanged");
      countMessage(gMetrics.skipped);
    } else if (!cfg) {
      countMessage(gMetrics.unchanged);
    } else {
      RewriteOutcome out = rewriteMessage(*cfg, m.envelope, m.headers);
      for (const std::string& note : out.notes) {
        logInfo(prefix + note);
      }
      if (out.error) {
        logError(prefix + out.errorReason + "; on_error=" + onErrorName(cfg));
        countMessage(gMetrics.error);
        result = onErrorResult(cfg);
      } else {
        Status st = applyPlan(out.plan, mods);
        if (!st) {
          mods->clear();  // nothing half-applied
          logError(prefix + "cannot apply changes: " + st.message() +
                   "; on_error=" + onErrorName(cfg));
          countMessage(gMetrics.error);
          result = onErrorResult(cfg);
        } else if (!out.changes.empty()) {
          logInfo(formatRewriteLog(m.envelope.queueId, out.changes));
          countMessage(gMetrics.changed);
          if (gMetrics.changes) {
            gMetrics.changes->inc(out.changes.size());
          }
        } else {
          countMessage(gMetrics.unchanged);
        }
      }
    }
  } catch (...) {
    mods->clear();
    logError("end of message: internal error");
    countMessage(gMetrics.error);
    result = onErrorResult(cfg);
  }
  if (gMetrics.eomSeconds) {
    gMetrics.eomSeconds->observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  message_.reset();
  return result;
}

void RelaykitFilter::abort(const MilterSession& s) {
  (void)s;
  message_.reset();  // Postfix may abort twice: harmless
}

void RelaykitFilter::close(const MilterSession& s) {
  (void)s;
  message_.reset();
  client_ = Envelope();
}

void setActiveConfig(std::shared_ptr<const MilterConfig> config) {
  std::atomic_store(&gConfig, std::move(config));
}

std::shared_ptr<const MilterConfig> activeConfig() {
  return std::atomic_load(&gConfig);
}

void initMilterMetrics(MetricsRegistry* registry) {
  CounterFamily& messages = registry->counter(
      "relaykit_milter_messages_total", "Messages seen at end of message, by result", {"result"});
  gMetrics.changed = &messages.labels({"changed"});
  gMetrics.unchanged = &messages.labels({"unchanged"});
  gMetrics.error = &messages.labels({"error"});
  gMetrics.skipped = &messages.labels({"skipped"});
  gMetrics.changes =
      &registry
           ->counter("relaykit_milter_changes_total", "Header and sender changes applied", {"kind"})
           .labels({"all"});
  gMetrics.eomSeconds =
      &registry
           ->histogram("relaykit_milter_eom_seconds", "Time spent in the end-of-message callback")
           .get();
}

int activeMessages() {
  return gActiveMessages.load(std::memory_order_relaxed);
}

}  // namespace relaykit::milter

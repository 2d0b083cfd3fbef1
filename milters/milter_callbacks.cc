// SPDX-License-Identifier: Apache-2.0
// milter_callbacks.cc: relaykit's milter filter, wiring the pure rewrite engine to Postfix.
//
// Protocol facts honoured here (how Postfix 3.7 drives a milter): modifications only at end of
// message; only the steps the configuration needs are negotiated, with the no-reply flags and
// SMFIP_HDR_LEADSPC; macros are read at the stage where Postfix sends them ({auth_authen} at MAIL
// FROM, i at EOM); state is reset per message (MAIL FROM, abort - possibly twice -, EOM) and at the
// end of the SMTP session.
#include "milters/milter_callbacks.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/concat.h"
#include "common/server/logging.h"
#include "milters/message_rewriter.h"
#include "milters/milter_filter_internal.h"

namespace relaykit::milter {

using filter_internal::gMetrics;
using filter_internal::increment;
using filter_internal::onErrorName;
using filter_internal::onErrorResult;

namespace {

// Bounds on what one message may make us hold in memory; past them the message passes unchanged.
// Postfix itself has no header count limit (only message_size_limit, 10240000 by default, and
// header_size_limit per header): these stay above what a default Postfix accepts in practice.
constexpr size_t kMaxRecipients = 10000;
// Room for the headers of a typical message, made at MAIL FROM in one allocation (the vector
// grows past it as usual).
constexpr size_t kReservedHeaders = 16;
// A message's vectors (headers, their slots, the plan, ...) grown past this many elements are
// released at its end rather than kept for the next message (a message with thousands of
// headers does not leave a connection holding their room).
constexpr size_t kKeptHeaders = 256;
// A log line buffer grown past this (a message with thousands of changes) is not kept.
constexpr size_t kKeptLogLineBytes = 64 * 1024;
// The macro asked for at a stage where we need none: Postfix defines no macro of this name.
constexpr const char* kNoMacro = "{relaykit_none}";

// Empties `v` for the next message: its storage kept, or released when it grew past
// kKeptHeaders elements.
template <typename Vector>
void clearForNext(Vector& v) {
  if (v.capacity() > kKeptHeaders) {
    Vector().swap(v);
  } else {
    v.clear();
  }
}

std::shared_ptr<const MilterConfig> gConfig;      // accessed with std::atomic_load/store
std::atomic<std::uint64_t> gConfigGeneration{0};  // one more after every store

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

std::string_view stripAngles(std::string_view s) {
  if (s.size() >= 2 && s.front() == '<' && s.back() == '>') {
    s = s.substr(1, s.size() - 2);
  }
  return s;
}

// Postfix's cleanup(8) presents a non_smtpd_milters submission (sendmail, pickup) as a connection
// from "localhost" 127.0.0.1 port 0 (cleanup_milter.c); no SMTP client has source port 0.
bool isNonSmtpdConnect(const ConnectInfo& info) {
  return info.family == SMFIA_INET && info.port == 0 && info.address == "127.0.0.1" &&
         info.hostname == "localhost";
}

}  // namespace

namespace filter_internal {

Metrics gMetrics;

void increment(Counter* c) {
  if (c != nullptr) {
    c->inc();
  }
}

bool faultAtSign() {
  static const bool fault = [] {
    const char* v = std::getenv("RELAYKIT_MILTER_FAULT");
    return v != nullptr && std::string(v) == "sign";
  }();
  return fault;
}

MilterResponse onErrorResult(const MilterConfig* config) {
  return MilterResponse::of(config && config->onError == OnError::kAccept
                                ? MilterResponse::Verdict::kContinue
                                : MilterResponse::Verdict::kTempfail);
}

const char* onErrorName(const MilterConfig* config) {
  return config && config->onError == OnError::kAccept ? "accept" : "tempfail";
}

}  // namespace filter_internal

MilterWants relaykitWants(const MilterConfig* cfg) {
  MilterWants wants;
  wants.actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM | SMFIF_SETSYMLIST;
  wants.protocol = SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_CONN | SMFIP_NR_HELO |
                   SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY |
                   SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_HDR_LEADSPC;
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
  if (!cfg || !cfg->needsBody()) {
    wants.protocol |= SMFIP_NOBODY;  // the body only when DKIM signing hashes it
  }
  // Only the macros we read, at the stage where Postfix has them: fewer bytes on every message.
  // Where we need none, a name Postfix never defines: an empty list would mean "the defaults"
  // (milter_*_macros), and Postfix sends a stage's macro packet anyway, with only the defined
  // ones (milter_macro_lookup): an empty packet, nothing to parse or keep.
  wants.macros[SMFIM_CONNECT] = kNoMacro;
  wants.macros[SMFIM_HELO] = kNoMacro;
  wants.macros[SMFIM_ENVFROM] = "{auth_authen}";
  wants.macros[SMFIM_ENVRCPT] = kNoMacro;
  wants.macros[SMFIM_DATA] = kNoMacro;
  wants.macros[SMFIM_EOH] = kNoMacro;
  wants.macros[SMFIM_EOM] = "i";
  return wants;
}

RelaykitFilter::Message::~Message() {
  end();
}

void RelaykitFilter::Message::begin() {
  end();
  active = true;
  gActiveMessages.fetch_add(1, std::memory_order_relaxed);
}

void RelaykitFilter::Message::end() {
  if (!active) {
    return;
  }
  active = false;
  gActiveMessages.fetch_sub(1, std::memory_order_relaxed);
  config.reset();
  envelope.clear();
  clearForNext(headers);
  headerBytes = 0;
  overflow = false;
  failure.clear();
  signer.reset();
  nonSmtpd = false;
  job.reset();
  signed_.reset();
  domain.clear();
  prefix.clear();
  changed = false;
  changes = 0;
}

RelaykitFilter::RelaykitFilter() : config_(activeConfig()) {}

RelaykitFilter::~RelaykitFilter() = default;

void RelaykitFilter::reset(std::shared_ptr<const MilterConfig> config) {
  config_ = std::move(config);
  client_.clear();
  nonSmtpd_ = false;
  endMessage();
}

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
  bool bodyOk = !latest->needsBody() || !s.hasProtocol(SMFIP_NOBODY);
  return rcptOk && heloOk && hdrOk && connOk && bodyOk ? latest : config_;
}

const MilterWants& RelaykitFilter::negotiate(const OptionNegotiation& offer) {
  (void)offer;
  config_ = activeConfig();
  // What a snapshot wants is fixed: computed once per snapshot (the loop thread negotiates every
  // connection; the cache holds the last snapshot seen, released at the next one).
  struct WantsCache {
    std::shared_ptr<const MilterConfig> config;
    MilterWants wants;
  };
  static thread_local WantsCache cache;
  static std::atomic<std::uint64_t> answers{0};
  if (!cache.config || cache.config != config_) {
    cache.wants = relaykitWants(config_.get());
    cache.wants.id = answers.fetch_add(1, std::memory_order_relaxed) + 1;  // one per snapshot
    cache.config = config_;
  }
  return cache.wants;
}

MilterResponse RelaykitFilter::connect(const MilterSession& s, const ConnectInfo& info) {
  (void)s;
  try {
    client_.clear();
    nonSmtpd_ = isNonSmtpdConnect(info);
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
    message_.begin();
    Message& m = message_;
    m.config = snapshotFor(s);
    m.headers.reserve(kReservedHeaders);
    m.envelope.clientAddress = client_.clientAddress;
    m.envelope.clientName = client_.clientName;
    m.envelope.helo = client_.helo;
    m.envelope.sender.assign(stripAngles(args.empty() ? std::string_view() : args[0]));
    for (std::size_t i = 1; i < args.size(); ++i) {
      m.envelope.senderArgs.emplace_back(args[i]);
    }
    if (const std::string* auth = s.macro("{auth_authen}")) {
      m.envelope.saslUser = *auth;
    }
    m.nonSmtpd = nonSmtpd_;
    if (m.config && m.config->dkim) {
      m.signer = std::make_unique<dkim::MessageSigner>(m.config->dkim->bodyCanons());
    }
  } catch (...) {
    if (message_.active) {
      message_.failure = "internal error at MAIL FROM";
    }
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::recipient(const MilterSession& s,
                                         const std::vector<std::string_view>& args) {
  (void)s;
  if (message_.active) {
    try {
      if (message_.envelope.recipients.size() < kMaxRecipients) {
        message_.envelope.recipients.emplace_back(
            stripAngles(args.empty() ? std::string_view() : args[0]));
      }
    } catch (...) {
      message_.failure = "internal error at RCPT TO";
    }
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::header(const MilterSession& s, std::string_view name,
                                      std::string_view value) {
  if (!message_.active || message_.overflow) {
    return MilterResponse::proceed();
  }
  Message& m = message_;
  try {
    m.headerBytes += name.size() + value.size();
    if (m.headers.size() >= kMaxMessageHeaders || m.headerBytes > kMaxMessageHeaderBytes) {
      m.overflow = true;
      m.headers.clear();
      m.headers.shrink_to_fit();
    } else {
      if (s.leadingSpace()) {
        m.headers.push_back(HeaderField{std::string(name), std::string(value)});  // one copy each
      } else {
        // Without SMFIP_HDR_LEADSPC (an old MTA), the space after the colon was dropped.
        m.headers.push_back(HeaderField{std::string(name), concat({" ", value})});
      }
    }
  } catch (...) {
    m.failure = "internal error in header";
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::body(const MilterSession& s, std::string_view chunk) {
  (void)s;
  if (message_.active && message_.signer && !message_.overflow) {
    try {
      message_.signer->feedBody(chunk);
    } catch (...) {
      message_.failure = "internal error in body";
    }
  }
  return MilterResponse::proceed();
}

MilterResponse RelaykitFilter::finishMessage(Counter* counted, MilterResponse result) {
  increment(counted);
  if (gMetrics.eomSeconds) {
    gMetrics.eomSeconds->observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - message_.started).count());
  }
  endMessage();
  return result;
}

MilterResponse RelaykitFilter::finishAfterInternalError(const MilterConfig* cfg,
                                                        MilterModifications* mods) {
  mods->clear();
  logError("end of message: internal error");
  return finishMessage(gMetrics.error, onErrorResult(cfg));
}

MilterResponse RelaykitFilter::endOfMessage(const MilterSession& s, MilterModifications* mods) {
  if (!message_.active) {
    return MilterResponse::proceed();
  }
  Message& m = message_;
  if (gMetrics.eomSeconds) {
    m.started = std::chrono::steady_clock::now();  // for finishMessage()'s observation
  }
  MilterResponse result = MilterResponse::proceed();
  Counter* counted = gMetrics.unchanged;
  const MilterConfig* cfg = m.config.get();
  try {
    const std::string* qid = s.macro("i");
    if (qid != nullptr) {
      m.envelope.queueId.assign(*qid);
    }
    m.prefix.assign(m.envelope.queueId.empty() ? std::string_view("NOQUEUE")
                                               : std::string_view(m.envelope.queueId));
    m.prefix += ": ";
    const std::string& prefix = m.prefix;
    if (faultAtEom() && m.failure.empty()) {
      m.failure = "internal error (injected by RELAYKIT_MILTER_FAULT=eom)";
    }
    if (!m.failure.empty()) {
      logError(prefix + m.failure + "; on_error=" + onErrorName(cfg));
      counted = gMetrics.error;
      result = onErrorResult(cfg);
    } else if (m.overflow) {
      logWarning(prefix + "headers larger than " + std::to_string(kMaxMessageHeaderBytes) +
                 " bytes or more than " + std::to_string(kMaxMessageHeaders) +
                 ": message passed unchanged");
      counted = gMetrics.skipped;
    } else if (cfg) {
      // The resulting headers are for DKIM signing only.
      RewriteOutcome& out = outcome_;
      rewritten_ = true;
      rewriteMessage(*cfg, m.envelope, &m.headers, cfg->dkim != nullptr, &scratch_, &out);
      for (const std::string& note : out.notes) {
        logInfo(prefix + note);
      }
      if (out.error) {
        logError(prefix + out.errorReason + "; on_error=" + onErrorName(cfg));
        counted = gMetrics.error;
        result = onErrorResult(cfg);
      } else {
        Status st = applyPlan(out.plan, mods);
        if (!st) {
          mods->clear();  // nothing half-applied
          logError(prefix + "cannot apply changes: " + st.message() +
                   "; on_error=" + onErrorName(cfg));
          counted = gMetrics.error;
          result = onErrorResult(cfg);
        } else {
          if (!out.changes.empty()) {
            thread_local std::string line;  // storage kept from message to message
            formatRewriteLog(m.envelope.queueId, out.changes, &line);
            logInfo(line);
            if (line.capacity() > kKeptLogLineBytes) {
              std::string().swap(line);
            }
            counted = gMetrics.changed;
            m.changed = true;
            if (gMetrics.changes) {
              gMetrics.changes->inc(out.changes.size());
            }
          }
          if (cfg->dkim && m.signer) {
            Status signing = startSigning(m, out, mods);
            if (!signing) {
              mods->clear();
              logError(prefix + "dkim: " + signing.message() + "; on_error=" + onErrorName(cfg));
              increment(gMetrics.dkimError);
              counted = gMetrics.error;
              result = onErrorResult(cfg);
            } else if (m.job) {
              return MilterResponse::pending();  // resumeEndOfMessage() ends the message
            }
          }
        }
      }
    }
  } catch (...) {
    return finishAfterInternalError(cfg, mods);
  }
  return finishMessage(counted, result);
}

void RelaykitFilter::endMessage() {
  message_.end();
  if (!rewritten_) {
    return;  // abort after the end of message, close: nothing of a message is held
  }
  rewritten_ = false;
  outcome_.clear();              // the error and its reason too
  clearForNext(scratch_.slots);  // the original headers moved aside: not kept past the message
  clearForNext(outcome_.plan);
  clearForNext(outcome_.changes);
  clearForNext(outcome_.notes);
  clearForNext(outcome_.headers);
}

void RelaykitFilter::abort(const MilterSession& s) {
  (void)s;
  endMessage();  // Postfix may abort twice: harmless
}

void RelaykitFilter::close(const MilterSession& s) {
  (void)s;
  endMessage();
  client_.clear();
}

void setActiveConfig(std::shared_ptr<const MilterConfig> config) {
  std::atomic_store(&gConfig, std::move(config));
  gConfigGeneration.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<const MilterConfig> activeConfig() {
  // The loop thread asks several times per message: each thread reads the snapshot again
  // (std::atomic_load takes a lock) only when setActiveConfig() ran since its last read. A
  // generation seen here follows its store, so the snapshot read is that one or a newer one.
  thread_local std::uint64_t seen = 0;
  thread_local std::shared_ptr<const MilterConfig> cached;
  const std::uint64_t generation = gConfigGeneration.load(std::memory_order_acquire);
  if (generation != seen || !cached) {
    cached = std::atomic_load(&gConfig);
    seen = generation;
  }
  return cached;
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
  gMetrics.eomSeconds = &registry
                             ->histogram("relaykit_milter_eom_seconds",
                                         "Time from end of message to its reply (signing included)")
                             .get();
  CounterFamily& dkim =
      registry->counter("relaykit_milter_dkim_messages_total",
                        "DKIM decisions at end of message, by result", {"result"});
  gMetrics.dkimSigned = &dkim.labels({"signed"});
  gMetrics.dkimNoKey = &dkim.labels({"no_key"});
  gMetrics.dkimNoDomain = &dkim.labels({"no_domain"});
  gMetrics.dkimNotSelected = &dkim.labels({"not_selected"});
  gMetrics.dkimError = &dkim.labels({"error"});
  gMetrics.dkimSignatures =
      &registry->counter("relaykit_milter_dkim_signatures_total", "DKIM-Signature headers added")
           .get();
}

int activeMessages() {
  return gActiveMessages.load(std::memory_order_relaxed);
}

}  // namespace relaykit::milter

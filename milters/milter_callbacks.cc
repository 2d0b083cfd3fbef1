// milter_callbacks.cc: libmilter callbacks wiring the pure rewrite engine to Postfix.
//
// Protocol facts honoured here (postfix-facts.md): modifications only at end of message; only the
// steps the configuration needs are negotiated, with the no-reply flags and SMFIP_HDR_LEADSPC;
// macros are read at the stage where Postfix sends them ({auth_authen} at MAIL FROM, i at EOM);
// state is reset per message (MAIL FROM, abort - possibly twice -, EOM) and freed at close.
#include "milters/milter_callbacks.h"

#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>

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

struct Metrics {
  CounterFamily* messages = nullptr;  // result: changed | unchanged | error | skipped
  CounterFamily* changes = nullptr;   // kind: header | sender
  HistogramFamily* eomSeconds = nullptr;
};
Metrics gMetrics;

void countMessage(const char* result) {
  if (gMetrics.messages) {
    gMetrics.messages->labels({result}).inc();
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

// Counts itself in gActiveMessages from MAIL FROM until reset (EOM, abort, close).
struct MessageContext {
  MessageContext() { gActiveMessages.fetch_add(1); }
  ~MessageContext() { gActiveMessages.fetch_sub(1); }
  MessageContext(const MessageContext&) = delete;
  MessageContext& operator=(const MessageContext&) = delete;
  std::shared_ptr<const MilterConfig> config;
  Envelope envelope;
  std::vector<HeaderField> headers;
  size_t headerBytes = 0;
  bool overflow = false;
  std::string failure;  // an internal error seen before EOM
};

struct ConnectionContext {
  std::shared_ptr<const MilterConfig> config;  // pinned at negotiation
  unsigned long steps = 0;                     // SMFIP_* negotiated
  Envelope client;                             // client address, name, helo
  std::optional<MessageContext> message;

  bool noReply(unsigned long flag) const { return (steps & flag) != 0; }
};

ConnectionContext* context(SMFICTX* ctx) {
  return static_cast<ConnectionContext*>(smfi_getpriv(ctx));
}

sfsistat reply(ConnectionContext* c, unsigned long nrFlag) {
  return c && c->noReply(nrFlag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

// The newest snapshot whose needs fit the steps negotiated on this connection.
std::shared_ptr<const MilterConfig> snapshotFor(const ConnectionContext& c) {
  std::shared_ptr<const MilterConfig> latest = activeConfig();
  if (!latest) {
    return c.config;
  }
  bool rcptOk = !latest->needsRecipients() || !(c.steps & SMFIP_NORCPT);
  bool heloOk = !latest->needsHelo() || !(c.steps & SMFIP_NOHELO);
  bool hdrOk = !latest->needsHeaders() || !(c.steps & SMFIP_NOHDRS);
  bool connOk = !latest->needsConnect() || !(c.steps & SMFIP_NOCONNECT);
  return rcptOk && heloOk && hdrOk && connOk ? latest : c.config;
}

std::string stripAngles(const char* arg) {
  std::string s = arg ? arg : "";
  if (s.size() >= 2 && s.front() == '<' && s.back() == '>') {
    s = s.substr(1, s.size() - 2);
  }
  return s;
}

class LibmilterActions : public MilterActions {
 public:
  explicit LibmilterActions(SMFICTX* ctx) : ctx_(ctx) {}
  Status changeHeader(const std::string& name, int index, const std::string* value) override {
    return check(smfi_chgheader(ctx_, const_cast<char*>(name.c_str()), index,
                                value ? const_cast<char*>(value->c_str()) : nullptr));
  }
  Status insertHeader(int index, const std::string& name, const std::string& value) override {
    return check(smfi_insheader(ctx_, index, const_cast<char*>(name.c_str()),
                                const_cast<char*>(value.c_str())));
  }
  Status addHeader(const std::string& name, const std::string& value) override {
    return check(
        smfi_addheader(ctx_, const_cast<char*>(name.c_str()), const_cast<char*>(value.c_str())));
  }
  Status changeFrom(const std::string& address, const std::string& args) override {
    std::string wrapped = "<" + address + ">";
    return check(smfi_chgfrom(ctx_, const_cast<char*>(wrapped.c_str()),
                              args.empty() ? nullptr : const_cast<char*>(args.c_str())));
  }

 private:
  static Status check(int rc) {
    return rc == MI_SUCCESS ? Status::ok() : Status::error("libmilter refused the change");
  }
  SMFICTX* ctx_;
};

sfsistat onErrorResult(const MilterConfig* config) {
  return config && config->onError == OnError::kAccept ? SMFIS_CONTINUE : SMFIS_TEMPFAIL;
}

// ---- callbacks ----

sfsistat xxfiNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long /*f2*/,
                       unsigned long /*f3*/, unsigned long* pf0, unsigned long* pf1,
                       unsigned long* pf2, unsigned long* pf3) {
  try {
    auto* c = context(ctx);
    if (!c) {
      c = new ConnectionContext();
      smfi_setpriv(ctx, c);
    }
    c->config = activeConfig();
    const MilterConfig* cfg = c->config.get();
    *pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM);
    unsigned long want = SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA |
                         SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
                         SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_DATA |
                         SMFIP_NR_UNKN | SMFIP_HDR_LEADSPC;
    if (cfg && !cfg->needsConnect()) {
      want |= SMFIP_NOCONNECT;  // one event fewer per SMTP session
    }
    if (!cfg || !cfg->needsHelo()) {
      want |= SMFIP_NOHELO;
    }
    if (!cfg || !cfg->needsRecipients()) {
      want |= SMFIP_NORCPT;
    }
    if (cfg && !cfg->needsHeaders()) {
      want |= SMFIP_NOHDRS;
    }
    *pf1 = f1 & want;
    *pf2 = 0;
    *pf3 = 0;
    c->steps = *pf1;
    if (f0 & SMFIF_SETSYMLIST) {
      // Ask only for the macros we read, at the stage where Postfix has them: fewer bytes on
      // every message. ("j" stands in where we need none: an empty list means "defaults".)
      *pf0 |= SMFIF_SETSYMLIST;
      smfi_setsymlist(ctx, SMFIM_CONNECT, const_cast<char*>("j"));
      smfi_setsymlist(ctx, SMFIM_HELO, const_cast<char*>("j"));
      smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("{auth_authen}"));
      smfi_setsymlist(ctx, SMFIM_ENVRCPT, const_cast<char*>("j"));
      smfi_setsymlist(ctx, SMFIM_DATA, const_cast<char*>("j"));
      smfi_setsymlist(ctx, SMFIM_EOH, const_cast<char*>("j"));
      smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
    }
    return SMFIS_CONTINUE;
  } catch (...) {
    return SMFIS_ALL_OPTS;
  }
}

sfsistat xxfiConnect(SMFICTX* ctx, char* hostname, _SOCK_ADDR* addr) {
  auto* c = context(ctx);
  try {
    if (!c) {  // MTA without negotiation (not Postfix 2.6+): take everything
      c = new ConnectionContext();
      c->config = activeConfig();
      smfi_setpriv(ctx, c);
    }
    c->client = Envelope();
    c->client.clientName = hostname ? hostname : "";
    if (addr) {
      char buf[INET6_ADDRSTRLEN] = {0};
      const void* raw = nullptr;
      if (addr->sa_family == AF_INET) {
        raw = &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr;
      } else if (addr->sa_family == AF_INET6) {
        raw = &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr;
      }
      if (raw && inet_ntop(addr->sa_family, raw, buf, sizeof(buf))) {
        StatusOr<IpAddress> ip = IpAddress::parse(buf);
        if (ip) {
          c->client.clientAddress = *ip;
        }
      }
    }
  } catch (...) {
    logError("connect: internal error");
  }
  return reply(c, SMFIP_NR_CONN);
}

sfsistat xxfiHelo(SMFICTX* ctx, char* helo) {
  auto* c = context(ctx);
  if (c) {
    try {
      c->client.helo = helo ? helo : "";
    } catch (...) {
    }
  }
  return reply(c, SMFIP_NR_HELO);
}

sfsistat xxfiEnvfrom(SMFICTX* ctx, char** argv) {
  auto* c = context(ctx);
  if (!c) {
    return SMFIS_CONTINUE;
  }
  try {
    c->message.emplace();
    MessageContext& m = *c->message;
    m.config = snapshotFor(*c);
    m.envelope.clientAddress = c->client.clientAddress;
    m.envelope.clientName = c->client.clientName;
    m.envelope.helo = c->client.helo;
    m.envelope.sender = stripAngles(argv && argv[0] ? argv[0] : "");
    for (int i = 1; argv && argv[i]; ++i) {
      m.envelope.senderArgs.emplace_back(argv[i]);
    }
    if (const char* auth = smfi_getsymval(ctx, const_cast<char*>("{auth_authen}"))) {
      m.envelope.saslUser = auth;
    }
  } catch (...) {
    if (c->message) {
      c->message->failure = "internal error at MAIL FROM";
    }
  }
  return reply(c, SMFIP_NR_MAIL);
}

sfsistat xxfiEnvrcpt(SMFICTX* ctx, char** argv) {
  auto* c = context(ctx);
  if (c && c->message) {
    try {
      if (c->message->envelope.recipients.size() < kMaxRecipients) {
        c->message->envelope.recipients.push_back(stripAngles(argv ? argv[0] : ""));
      }
    } catch (...) {
      c->message->failure = "internal error at RCPT TO";
    }
  }
  return reply(c, SMFIP_NR_RCPT);
}

sfsistat xxfiHeader(SMFICTX* ctx, char* name, char* value) {
  auto* c = context(ctx);
  if (c && c->message && !c->message->overflow) {
    MessageContext& m = *c->message;
    try {
      size_t size = std::strlen(name) + std::strlen(value);
      m.headerBytes += size;
      if (m.headers.size() >= kMaxMessageHeaders || m.headerBytes > kMaxMessageHeaderBytes) {
        m.overflow = true;
        m.headers.clear();
        m.headers.shrink_to_fit();
      } else {
        // Without SMFIP_HDR_LEADSPC (an old MTA), the space after the colon was dropped.
        std::string v = (c->steps & SMFIP_HDR_LEADSPC) ? value : std::string(" ") + value;
        m.headers.push_back(HeaderField{name, std::move(v)});
      }
    } catch (...) {
      m.failure = "internal error in header";
    }
  }
  return reply(c, SMFIP_NR_HDR);
}

sfsistat xxfiEom(SMFICTX* ctx) {
  auto* c = context(ctx);
  if (!c || !c->message) {
    return SMFIS_CONTINUE;
  }
  auto started = std::chrono::steady_clock::now();
  sfsistat result = SMFIS_CONTINUE;
  const MilterConfig* cfg = c->message->config.get();
  try {
    MessageContext& m = *c->message;
    const char* qid = smfi_getsymval(ctx, const_cast<char*>("i"));
    m.envelope.queueId = qid ? qid : "";
    std::string prefix = (m.envelope.queueId.empty() ? "NOQUEUE" : m.envelope.queueId) + ": ";
    if (faultAtEom() && m.failure.empty()) {
      m.failure = "internal error (injected by RELAYKIT_MILTER_FAULT=eom)";
    }
    if (!m.failure.empty()) {
      logError(prefix + m.failure +
               "; on_error=" + (cfg && cfg->onError == OnError::kAccept ? "accept" : "tempfail"));
      countMessage("error");
      result = onErrorResult(cfg);
    } else if (m.overflow) {
      logWarning(prefix + "headers larger than " + std::to_string(kMaxMessageHeaderBytes) +
                 " bytes or more than " + std::to_string(kMaxMessageHeaders) +
                 ": message passed "
                 "unchanged");
      countMessage("skipped");
    } else if (!cfg) {
      countMessage("unchanged");
    } else {
      RewriteOutcome out = rewriteMessage(*cfg, m.envelope, m.headers);
      for (const std::string& note : out.notes) {
        logInfo(prefix + note);
      }
      if (out.error) {
        logError(prefix + out.errorReason +
                 "; on_error=" + (cfg->onError == OnError::kAccept ? "accept" : "tempfail"));
        countMessage("error");
        result = onErrorResult(cfg);
      } else {
        LibmilterActions actions(ctx);
        Status st = applyPlan(out.plan, &actions);
        if (!st) {
          logError(prefix + "cannot apply changes: " + st.message());
          countMessage("error");
          result = onErrorResult(cfg);
        } else if (!out.changes.empty()) {
          logInfo(formatRewriteLog(m.envelope.queueId, out.changes));
          countMessage("changed");
          if (gMetrics.changes) {
            gMetrics.changes->labels({"all"}).inc(out.changes.size());
          }
        } else {
          countMessage("unchanged");
        }
      }
    }
  } catch (...) {
    logError("end of message: internal error");
    countMessage("error");
    result = onErrorResult(cfg);
  }
  if (gMetrics.eomSeconds) {
    gMetrics.eomSeconds->get().observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  c->message.reset();
  return result;
}

sfsistat xxfiAbort(SMFICTX* ctx) {
  auto* c = context(ctx);
  if (c) {
    c->message.reset();  // Postfix may abort twice: harmless
  }
  return SMFIS_CONTINUE;
}

sfsistat xxfiClose(SMFICTX* ctx) {
  delete context(ctx);
  smfi_setpriv(ctx, nullptr);
  return SMFIS_CONTINUE;
}

smfiDesc gDescription = {
    const_cast<char*>("relaykit-milter"),
    SMFI_VERSION,
    SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM,
    xxfiConnect,
    xxfiHelo,
    xxfiEnvfrom,
    xxfiEnvrcpt,
    xxfiHeader,
    nullptr,  // eoh
    nullptr,  // body
    xxfiEom,
    xxfiAbort,
    xxfiClose,
    nullptr,  // unknown
    nullptr,  // data
    xxfiNegotiate,
};

}  // namespace

void setActiveConfig(std::shared_ptr<const MilterConfig> config) {
  std::atomic_store(&gConfig, std::move(config));
}

std::shared_ptr<const MilterConfig> activeConfig() {
  return std::atomic_load(&gConfig);
}

void initMilterMetrics(MetricsRegistry* registry) {
  gMetrics.messages = &registry->counter("relaykit_milter_messages_total",
                                         "Messages seen at end of message, by result", {"result"});
  gMetrics.changes = &registry->counter("relaykit_milter_changes_total",
                                        "Header and sender changes applied", {"kind"});
  gMetrics.eomSeconds = &registry->histogram("relaykit_milter_eom_seconds",
                                             "Time spent in the end-of-message callback");
}

smfiDesc* milterDescription() {
  return &gDescription;
}

int activeMessages() {
  return gActiveMessages.load();
}

}  // namespace relaykit::milter

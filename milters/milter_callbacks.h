// SPDX-License-Identifier: Apache-2.0
// milter_callbacks.h: relaykit's milter filter, the glue between the milter protocol session
// (milter_session.h) and the pure rewrite engine (message_rewriter.h).
//
// Owns the live configuration snapshot (swapped on reload; each connection pins the snapshot it
// negotiated with, each message the newest snapshot its negotiated steps can serve). A
// RelaykitFilter is one connection's context; it owns a per-message context, begun at MAIL FROM
// and ended at abort and end of message, whose storage serves the next message. It never throws:
// any exception or table error becomes the configured on_error result at end of message.
// The DKIM hand-off is in milter_filter_dkim.cc; everything else in relaykit_milter_core.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/server/metrics.h"
#include "milters/dkim_sign_pool.h"
#include "milters/message_rewriter.h"
#include "milters/milter_config.h"
#include "milters/milter_session.h"

namespace relaykit::milter {

// Installs the first configuration and swaps later ones (reload). Thread-safe.
void setActiveConfig(std::shared_ptr<const MilterConfig> config);
// The active configuration. Thread-safe; each thread holds on to the last snapshot it read
// until it asks again after a setActiveConfig().
std::shared_ptr<const MilterConfig> activeConfig();

// Registers the metric families used by the filter. Call once before serving.
void initMilterMetrics(MetricsRegistry* registry);

// Messages between MAIL FROM and their end (EOM, abort or connection close) right now.
int activeMessages();

// The macros relaykit reads, per stage ({auth_authen} at MAIL, i at end of message), and the
// steps and actions a configuration needs: what negotiation asks for.
MilterWants relaykitWants(const MilterConfig* config);

class RelaykitFilter : public MilterFilter {
 public:
  RelaykitFilter();
  ~RelaykitFilter() override;
  RelaykitFilter(const RelaykitFilter&) = delete;
  RelaykitFilter& operator=(const RelaykitFilter&) = delete;

  const MilterWants& negotiate(const OptionNegotiation& offer) override;
  MilterResponse connect(const MilterSession& s, const ConnectInfo& info) override;
  MilterResponse helo(const MilterSession& s, std::string_view name) override;
  MilterResponse mail(const MilterSession& s, const std::vector<std::string_view>& args) override;
  MilterResponse recipient(const MilterSession& s,
                           const std::vector<std::string_view>& args) override;
  MilterResponse header(const MilterSession& s, std::string_view name,
                        std::string_view value) override;
  MilterResponse body(const MilterSession& s, std::string_view chunk) override;
  // With DKIM signing planned, answers kPending and leaves a job for takeSignJob(); the owner
  // signs it off the loop, hands the result to setSignResult(), then resumes the session.
  MilterResponse endOfMessage(const MilterSession& s, MilterModifications* mods) override;
  MilterResponse resumeEndOfMessage(const MilterSession& s, MilterModifications* mods) override;
  void abort(const MilterSession& s) override;
  void close(const MilterSession& s) override;

  bool inMessage() const { return message_.active; }
  // Back to the state of a new filter (for a new connection) holding `config` (a spare holds
  // none: it would keep an old snapshot alive).
  void reset(std::shared_ptr<const MilterConfig> config);
  // A signing job left by endOfMessage() (at most one), or nullopt.
  std::optional<dkim::SignJob> takeSignJob();
  // The signatures (or the signing error) for the job taken.
  void setSignResult(StatusOr<std::vector<std::string>> result);

 private:
  // One message, from MAIL FROM (begin()) to its end (end()); counted in activeMessages() while
  // active. One per filter, its strings' and vectors' storage kept from message to message.
  struct Message {
    Message() = default;
    ~Message();
    Message(const Message&) = delete;
    Message& operator=(const Message&) = delete;
    void begin();
    // Back to the state of a new message, keeping storage (up to kKept* bounds), releasing the
    // snapshot and any signer. Harmless when not active.
    void end();
    bool active = false;
    std::shared_ptr<const MilterConfig> config;
    Envelope envelope;
    std::vector<HeaderField> headers;
    size_t headerBytes = 0;
    bool overflow = false;
    std::string failure;                          // an internal error seen before end of message
    std::unique_ptr<dkim::MessageSigner> signer;  // dkim configured: the body hashes
    bool nonSmtpd = false;
    // Set while a signature is being made (endOfMessage() answered kPending):
    std::optional<dkim::SignJob> job;
    std::optional<StatusOr<std::vector<std::string>>> signed_;
    std::string domain;  // signed for
    std::string prefix;  // "QID: " for the log
    bool changed = false;
    std::size_t changes = 0;
    std::chrono::steady_clock::time_point started;
  };
  // Ends the current message (if any): its context and the rewrite's storage kept for the next.
  void endMessage();
  // Counts the message in `counted`, observes its end-of-message time and ends it; returns
  // `result`, its verdict.
  MilterResponse finishMessage(Counter* counted, MilterResponse result);
  // An exception at end of message: no modification sent, logged, counted as an error; the
  // configured on_error answers.
  MilterResponse finishAfterInternalError(const MilterConfig* cfg, MilterModifications* mods);
  Status startSigning(Message& m, const RewriteOutcome& out, MilterModifications* mods);
  std::shared_ptr<const MilterConfig> snapshotFor(const MilterSession& s) const;

  std::shared_ptr<const MilterConfig> config_;  // pinned at negotiation
  Envelope client_;                             // client address, name, helo
  bool nonSmtpd_ = false;                       // cleanup(8)'s non_smtpd_milters connection
  Message message_;
  // The rewrite of the message at its end, kept for the storage of the next one.
  RewriteScratch scratch_;
  RewriteOutcome outcome_;
  bool rewritten_ = false;  // outcome_ and scratch_ hold a message's rewrite until endMessage()
};

}  // namespace relaykit::milter

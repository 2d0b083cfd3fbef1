// SPDX-License-Identifier: Apache-2.0
// milter_session.h: one milter protocol session (the milter side of Postfix's milter8.c), as a
// state machine fed decoded packets, calling a MilterFilter and appending the replies to a string.
//
// What it takes care of, so that a filter only decides:
//  - option negotiation, versions 2 to 6: the reply version is the lower of the MTA's and 6; the
//    actions (SMFIF_*) and protocol steps (SMFIP_*: skipped steps, no-reply flags,
//    SMFIP_HDR_LEADSPC) are what the filter asks for AND the MTA offers; macro lists per stage
//    (SMFIF_SETSYMLIST) when offered. A session whose first command is not SMFIC_OPTNEG is
//    served as libmilter serves an MTA that does not negotiate (every step, a reply to each).
//  - macros per stage (SMFIC_MACRO before CONNECT, HELO, MAIL, RCPT, DATA, EOH, end of message):
//    a command clears the macros of the stages after its own, as libmilter does; macro() looks at
//    the newest stage first. "{name}" and "name" are the same macro.
//  - replies: none for a step whose SMFIP_NR_* flag was negotiated, none for SMFIC_MACRO,
//    SMFIC_ABORT, SMFIC_QUIT, SMFIC_QUIT_NC; the filter's verdict otherwise; at end of message
//    the filter's modifications first, then its verdict, all appended to the same string.
//  - SMFIC_QUIT ends the session; SMFIC_QUIT_NC ends the SMTP session but keeps the connection
//    and the negotiation for the next one (Sendmail's connection reuse).
// Errors (a malformed packet, a command code outside the protocol, a version below 2) end the
// session with a message for the log, as libmilter does; the MTA then applies its
// milter_default_action. No I/O, no clock; the filter must not throw.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "milters/edit_plan.h"
#include "milters/milter_protocol.h"

namespace relaykit::milter {

// A step's answer. kSkip is sent only for body chunks when SMFIP_SKIP was negotiated (else
// kContinue). kPending, only from endOfMessage(): the answer comes later (the session holds the
// modifications made so far and waits for MilterSession::resumeEndOfMessage()). A non-empty
// `smtpReply` ("550 5.7.1 ...") with kReject or kTempfail is sent as SMFIR_REPLYCODE.
struct MilterResponse {
  enum class Verdict { kContinue, kAccept, kReject, kTempfail, kDiscard, kSkip, kPending };
  Verdict verdict = Verdict::kContinue;
  std::string smtpReply;

  static MilterResponse proceed() { return MilterResponse(); }
  static MilterResponse of(Verdict v) { return MilterResponse{v, std::string()}; }
  static MilterResponse pending() { return of(Verdict::kPending); }
};

// What a filter asks for at negotiation.
struct MilterWants {
  std::uint32_t actions = 0;   // SMFIF_* it may use at end of message
  std::uint32_t protocol = 0;  // SMFIP_* (steps to skip, no-reply flags, HDR_LEADSPC, SKIP)
  std::array<std::string, kMacroStages> macros;  // space-separated names per SMFIM_* stage
  // Non-zero: every answer with this id has the same content, so a session may keep the reply
  // it built for one and send it again for the next (0: built afresh every time).
  std::uint64_t id = 0;
};

class MilterSession;

// The end-of-message modifications, appended to the reply in the order made. Each call checks
// that the action was negotiated (else an error, nothing appended). clear() drops every
// modification made so far (a filter that fails half-way sends none).
class MilterModifications : public MilterActions {
 public:
  MilterModifications(std::uint32_t actions, std::string* out);
  // value == nullptr deletes (SMFIR_CHGHEADER with an empty value). Needs SMFIF_CHGHDRS.
  Status changeHeader(const std::string& name, int index, const std::string* value) override;
  // Needs SMFIF_ADDHDRS.
  Status insertHeader(int index, const std::string& name, const std::string& value) override;
  Status addHeader(const std::string& name, const std::string& value) override;
  // `address` without angle brackets; needs SMFIF_CHGFROM.
  Status changeFrom(const std::string& address, const std::string& args) override;
  // SMFIF_ADDRCPT (no args) or SMFIF_ADDRCPT_PAR; SMFIF_DELRCPT; SMFIF_QUARANTINE.
  Status addRecipient(std::string_view address, std::string_view args);
  Status deleteRecipient(std::string_view address);
  Status quarantine(std::string_view reason);
  // SMFIR_PROGRESS: tells the MTA to restart its timeout (always allowed).
  void progress();
  void clear();
  bool empty() const { return out_->size() == start_; }

 private:
  Status need(std::uint32_t action, const char* what) const;
  std::uint32_t actions_;
  std::string* out_;
  std::size_t start_;
};

class MilterFilter {
 public:
  virtual ~MilterFilter() = default;
  // SMFIC_OPTNEG arrived with this offer: what the filter wants (intersected with the offer by
  // the session). Not called for an MTA that does not negotiate. The answer is read before the
  // filter's next call: a filter may keep one and answer with it every time (no copy).
  virtual const MilterWants& negotiate(const OptionNegotiation& offer) = 0;
  virtual MilterResponse connect(const MilterSession& s, const ConnectInfo& info) {
    (void)s;
    (void)info;
    return MilterResponse::proceed();
  }
  virtual MilterResponse helo(const MilterSession& s, std::string_view name) {
    (void)s;
    (void)name;
    return MilterResponse::proceed();
  }
  // args[0] is the address as the MTA wrote it ("<a@b>"), then the ESMTP arguments.
  virtual MilterResponse mail(const MilterSession& s, const std::vector<std::string_view>& args) {
    (void)s;
    (void)args;
    return MilterResponse::proceed();
  }
  virtual MilterResponse recipient(const MilterSession& s,
                                   const std::vector<std::string_view>& args) {
    (void)s;
    (void)args;
    return MilterResponse::proceed();
  }
  virtual MilterResponse data(const MilterSession& s) {
    (void)s;
    return MilterResponse::proceed();
  }
  // `value` as sent: see MilterSession::leadingSpace().
  virtual MilterResponse header(const MilterSession& s, std::string_view name,
                                std::string_view value) {
    (void)s;
    (void)name;
    (void)value;
    return MilterResponse::proceed();
  }
  virtual MilterResponse endOfHeaders(const MilterSession& s) {
    (void)s;
    return MilterResponse::proceed();
  }
  virtual MilterResponse body(const MilterSession& s, std::string_view chunk) {
    (void)s;
    (void)chunk;
    return MilterResponse::proceed();
  }
  virtual MilterResponse endOfMessage(const MilterSession& s, MilterModifications* mods) = 0;
  // After endOfMessage() answered kPending: the rest of the modifications and the verdict, when
  // the owner calls MilterSession::resumeEndOfMessage(). kPending again counts as kTempfail.
  virtual MilterResponse resumeEndOfMessage(const MilterSession& s, MilterModifications* mods) {
    (void)s;
    (void)mods;
    return MilterResponse::of(MilterResponse::Verdict::kTempfail);
  }
  virtual MilterResponse unknown(const MilterSession& s, std::string_view command) {
    (void)s;
    (void)command;
    return MilterResponse::proceed();
  }
  // SMFIC_ABORT: the current message is abandoned (may come twice, or outside a message).
  virtual void abort(const MilterSession& s) { (void)s; }
  // The SMTP session ended (SMFIC_QUIT, SMFIC_QUIT_NC, or the connection closed).
  virtual void close(const MilterSession& s) { (void)s; }
};

class MilterSession {
 public:
  enum class Next { kContinue, kClose };

  explicit MilterSession(MilterFilter* filter);

  // Handles one packet, appending any replies to *out. kClose: the session is over (QUIT, or an
  // error: see error()); nothing more must be fed. The filter's close() has been called then.
  Next handle(char command, std::string_view data, std::string* out);
  // Why the last kClose happened ("" after QUIT).
  const std::string& error() const { return error_; }
  // The connection went away without QUIT: tells the filter (once).
  void disconnected();
  // Back to the state of a new session (for a new connection; the filter is reset by its
  // owner), keeping the memory of the macro and argument storage. Call disconnected() first.
  void reset();

  // The value of a macro, the newest stage first; nullptr when undefined.
  const std::string* macro(std::string_view name) const;
  bool negotiated() const { return negotiated_; }
  std::uint32_t version() const { return version_; }
  std::uint32_t actions() const { return actions_; }
  std::uint32_t protocol() const { return protocol_; }
  bool hasProtocol(std::uint32_t flag) const { return (protocol_ & flag) != 0; }
  // True when header values arrive with their leading space (SMFIP_HDR_LEADSPC negotiated);
  // otherwise the MTA removed one space after the colon.
  bool leadingSpace() const { return hasProtocol(SMFIP_HDR_LEADSPC); }
  // Between SMFIC_MAIL and the end of message or abort.
  bool inMessage() const { return inMessage_; }
  // The filter answered kPending at end of message: the MTA waits for the reply. Feed nothing
  // until resumeEndOfMessage() (the MTA sends nothing meanwhile).
  bool awaitingEndOfMessage() const { return awaitingEom_; }
  // Appends the held modifications, then the filter's resumeEndOfMessage() modifications and
  // verdict, to *out. Does nothing unless awaitingEndOfMessage().
  void resumeEndOfMessage(std::string* out);

 private:
  Next fail(std::string why);
  void clearMacrosAfter(int stage);
  void reply(std::uint32_t noReplyFlag, const MilterResponse& response, std::string* out) const;
  void finishEndOfMessage(MilterResponse response, std::string* out);
  Next negotiate(std::string_view data, std::string* out);
  Next endSmtpSession(bool quit);

  MilterFilter* filter_;
  bool negotiated_ = false;
  bool open_ = true;  // the filter has not been told close()
  bool inMessage_ = false;
  bool awaitingEom_ = false;
  std::string heldReply_;  // modifications made before kPending
  std::uint32_t version_ = kMilterProtocolVersion;
  std::uint32_t actions_ = kV1Actions;
  std::uint32_t protocol_ = 0;  // an MTA that does not negotiate: reply to everything
  std::array<std::vector<std::pair<std::string, std::string>>, kMacroStages> macros_;
  std::array<std::size_t, kMacroStages> macroCount_{};
  // The option negotiation reply last built, for wants with a non-zero id: sent again as it is
  // when the same wants meet the same offer (kept across reset(): it depends on nothing else).
  std::string negotiationReply_;
  std::uint64_t replyWantsId_ = 0;
  std::array<std::uint32_t, 3> replyFor_{};  // version, actions, protocol
  MacroDefinitions macroScratch_;       // the SMFIC_MACRO packet being stored (its capacity reused)
  std::vector<std::string_view> args_;  // reused between commands
  std::string error_;
};

// The SMFIM_* stage whose macros an SMFIC_MACRO for `command` defines; -1 for none.
int macroStage(char command);

}  // namespace relaykit::milter

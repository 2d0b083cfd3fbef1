// SPDX-License-Identifier: Apache-2.0
// milter_session.cc: the milter protocol session state machine; see milter_session.h.
#include "milters/milter_session.h"

#include <algorithm>

namespace relaykit::milter {
namespace {

// Macro names compare without their braces: "{auth_authen}" and "auth_authen" are one macro.
std::string_view bare(std::string_view name) {
  if (name.size() >= 2 && name.front() == '{' && name.back() == '}') {
    name.remove_prefix(1);
    name.remove_suffix(1);
  }
  return name;
}

}  // namespace

int macroStage(char command) {
  switch (command) {
    case SMFIC_CONNECT:
      return SMFIM_CONNECT;
    case SMFIC_HELO:
      return SMFIM_HELO;
    case SMFIC_MAIL:
      return SMFIM_ENVFROM;
    case SMFIC_RCPT:
      return SMFIM_ENVRCPT;
    case SMFIC_DATA:
      return SMFIM_DATA;
    case SMFIC_BODYEOB:
      return SMFIM_EOM;
    case SMFIC_EOH:
      return SMFIM_EOH;
    default:
      return -1;
  }
}

// ---- MilterModifications ----

MilterModifications::MilterModifications(std::uint32_t actions, std::string* out)
    : actions_(actions), out_(out), start_(out->size()) {}

Status MilterModifications::need(std::uint32_t action, const char* what) const {
  if ((actions_ & action) == 0) {
    return Status::error(std::string("the MTA did not allow ") + what);
  }
  return Status::ok();
}

Status MilterModifications::changeHeader(const std::string& name, int index,
                                         const std::string* value) {
  Status st = need(SMFIF_CHGHDRS, "header changes");
  if (st && index >= 0) {
    appendChangeHeader(out_, static_cast<std::uint32_t>(index), name,
                       value ? std::string_view(*value) : std::string_view());
  }
  return st;
}

Status MilterModifications::insertHeader(int index, const std::string& name,
                                         const std::string& value) {
  Status st = need(SMFIF_ADDHDRS, "header insertions");
  if (st) {
    appendInsertHeader(out_, static_cast<std::uint32_t>(std::max(index, 0)), name, value);
  }
  return st;
}

Status MilterModifications::addHeader(const std::string& name, const std::string& value) {
  Status st = need(SMFIF_ADDHDRS, "added headers");
  if (st) {
    appendAddHeader(out_, name, value);
  }
  return st;
}

Status MilterModifications::changeFrom(const std::string& address, const std::string& args) {
  Status st = need(SMFIF_CHGFROM, "sender changes");
  if (st) {
    appendChangeFrom(out_, address, args);
  }
  return st;
}

Status MilterModifications::addRecipient(std::string_view address, std::string_view args) {
  Status st = args.empty() ? need(SMFIF_ADDRCPT, "added recipients")
                           : need(SMFIF_ADDRCPT_PAR, "added recipients with arguments");
  if (st) {
    appendAddRecipient(out_, address, args);
  }
  return st;
}

Status MilterModifications::deleteRecipient(std::string_view address) {
  Status st = need(SMFIF_DELRCPT, "deleted recipients");
  if (st) {
    appendDeleteRecipient(out_, address);
  }
  return st;
}

Status MilterModifications::quarantine(std::string_view reason) {
  Status st = need(SMFIF_QUARANTINE, "quarantine");
  if (st) {
    appendQuarantine(out_, reason);
  }
  return st;
}

void MilterModifications::progress() {
  appendSimpleReply(out_, SMFIR_PROGRESS);
}

void MilterModifications::clear() {
  out_->resize(start_);
}

// ---- MilterSession ----

MilterSession::MilterSession(MilterFilter* filter) : filter_(filter) {}

MilterSession::Next MilterSession::fail(std::string why) {
  error_ = std::move(why);
  disconnected();
  return Next::kClose;
}

void MilterSession::disconnected() {
  if (open_) {
    open_ = false;
    inMessage_ = false;
    awaitingEom_ = false;
    std::string().swap(heldReply_);
    filter_->close(*this);
  }
}

void MilterSession::reset() {
  negotiated_ = false;
  open_ = true;
  inMessage_ = false;
  awaitingEom_ = false;
  heldReply_.clear();
  version_ = kMilterProtocolVersion;
  actions_ = kV1Actions;
  protocol_ = 0;
  macroCount_.fill(0);  // the slots keep their strings' memory; none is visible any more
  macroScratch_.stage = 0;
  macroScratch_.values.clear();
  args_.clear();
  error_.clear();
}

void MilterSession::clearMacrosAfter(int stage) {
  for (std::size_t i = static_cast<std::size_t>(stage) + 1; i < kMacroStages; ++i) {
    macroCount_[i] = 0;
  }
}

const std::string* MilterSession::macro(std::string_view name) const {
  name = bare(name);
  for (std::size_t s = kMacroStages; s-- > 0;) {
    for (std::size_t i = 0; i < macroCount_[s]; ++i) {
      if (bare(macros_[s][i].first) == name) {
        return &macros_[s][i].second;
      }
    }
  }
  return nullptr;
}

void MilterSession::reply(std::uint32_t noReplyFlag, const MilterResponse& response,
                          std::string* out) const {
  if (noReplyFlag != 0 && hasProtocol(noReplyFlag)) {
    return;
  }
  using V = MilterResponse::Verdict;
  if (!response.smtpReply.empty() &&
      (response.verdict == V::kReject || response.verdict == V::kTempfail)) {
    appendReplyCode(out, response.smtpReply);
    return;
  }
  switch (response.verdict) {
    case V::kContinue:
      appendSimpleReply(out, SMFIR_CONTINUE);
      return;
    case V::kAccept:
      appendSimpleReply(out, SMFIR_ACCEPT);
      return;
    case V::kReject:
      appendSimpleReply(out, SMFIR_REJECT);
      return;
    case V::kTempfail:
      appendSimpleReply(out, SMFIR_TEMPFAIL);
      return;
    case V::kDiscard:
      appendSimpleReply(out, SMFIR_DISCARD);
      return;
    case V::kSkip:
      appendSimpleReply(out, hasProtocol(SMFIP_SKIP) ? SMFIR_SKIP : SMFIR_CONTINUE);
      return;
    case V::kPending:  // only endOfMessage() may defer; anywhere else it means "try later"
      appendSimpleReply(out, SMFIR_TEMPFAIL);
      return;
  }
}

void MilterSession::finishEndOfMessage(MilterResponse response, std::string* out) {
  if (response.verdict == MilterResponse::Verdict::kSkip) {
    response.verdict = MilterResponse::Verdict::kContinue;
  }
  reply(0, response, out);
  inMessage_ = false;
}

void MilterSession::resumeEndOfMessage(std::string* out) {
  if (!awaitingEom_) {
    return;
  }
  awaitingEom_ = false;
  out->append(heldReply_);
  std::string().swap(heldReply_);
  MilterModifications mods(actions_, out);
  MilterResponse response = filter_->resumeEndOfMessage(*this, &mods);
  if (response.verdict == MilterResponse::Verdict::kPending) {
    mods.clear();
    response.verdict = MilterResponse::Verdict::kTempfail;
  }
  finishEndOfMessage(std::move(response), out);
}

MilterSession::Next MilterSession::negotiate(std::string_view data, std::string* out) {
  StatusOr<OptionNegotiation> offer = parseOptionNegotiation(data);
  if (!offer) {
    return fail(offer.status().message());
  }
  if (offer->version < kMinMilterProtocolVersion) {
    return fail("protocol version " + std::to_string(offer->version) + " below " +
                std::to_string(kMinMilterProtocolVersion));
  }
  const MilterWants& wants = filter_->negotiate(*offer);
  version_ = std::min(offer->version, kMilterProtocolVersion);
  actions_ = wants.actions & offer->actions;
  protocol_ = wants.protocol & offer->protocol;
  negotiated_ = true;
  const std::array<std::uint32_t, 3> key = {version_, actions_, protocol_};
  if (wants.id == 0 || wants.id != replyWantsId_ || key != replyFor_) {
    negotiationReply_.clear();
    appendOptionNegotiationReply(&negotiationReply_, version_, actions_, protocol_, wants.macros);
    replyWantsId_ = wants.id;
    replyFor_ = key;
  }
  out->append(negotiationReply_);
  return Next::kContinue;
}

MilterSession::Next MilterSession::endSmtpSession(bool quit) {
  disconnected();
  for (std::size_t& count : macroCount_) {
    count = 0;
  }
  if (quit) {
    error_.clear();
    return Next::kClose;
  }
  open_ = true;  // SMFIC_QUIT_NC: the next SMTP session follows on this connection
  return Next::kContinue;
}

MilterSession::Next MilterSession::handle(char command, std::string_view data, std::string* out) {
  if (!open_ && command != SMFIC_QUIT) {
    return fail("command after the session ended");
  }
  if (awaitingEom_) {
    return fail(commandName(command) + " before the end-of-message reply");
  }
  const int stage = macroStage(command);
  if (stage >= 0) {
    clearMacrosAfter(stage);
  }
  switch (command) {
    case SMFIC_OPTNEG:
      return negotiate(data, out);
    case SMFIC_MACRO: {
      if (data.size() == 1) {
        // The stage byte alone: none of the stage's listed macros is defined (Postfix sends one
        // before every header and command of a stage relaykit reads nothing at). Its macros
        // are none now, as after a parsed empty list.
        const int target = macroStage(data[0]);
        if (target >= 0) {
          macroCount_[static_cast<std::size_t>(target)] = 0;
        }
        return Next::kContinue;
      }
      MacroDefinitions* defs = &macroScratch_;
      if (Status parsed = parseMacrosInto(data, defs); !parsed) {
        return fail(parsed.message());
      }
      const int target = macroStage(defs->stage);
      if (target < 0) {
        return Next::kContinue;  // macros for a stage that has none: ignored
      }
      auto& slots = macros_[static_cast<std::size_t>(target)];
      if (slots.size() < defs->values.size()) {
        slots.resize(defs->values.size());
      }
      for (std::size_t i = 0; i < defs->values.size(); ++i) {
        slots[i].first.assign(defs->values[i].first);
        slots[i].second.assign(defs->values[i].second);
      }
      macroCount_[static_cast<std::size_t>(target)] = defs->values.size();
      return Next::kContinue;
    }
    case SMFIC_CONNECT: {
      StatusOr<ConnectInfo> info = parseConnect(data);
      if (!info) {
        return fail(info.status().message());
      }
      reply(SMFIP_NR_CONN, filter_->connect(*this, *info), out);
      return Next::kContinue;
    }
    case SMFIC_HELO: {
      Status st = splitStrings(data, &args_);
      if (!st) {
        return fail("HELO: " + st.message());
      }
      reply(SMFIP_NR_HELO, filter_->helo(*this, args_.empty() ? "" : args_[0]), out);
      return Next::kContinue;
    }
    case SMFIC_MAIL:
    case SMFIC_RCPT: {
      Status st = splitStrings(data, &args_);
      if (!st || args_.empty()) {
        return fail(commandName(command) + ": " + (st ? "no address" : st.message()));
      }
      if (command == SMFIC_MAIL) {
        inMessage_ = true;
        reply(SMFIP_NR_MAIL, filter_->mail(*this, args_), out);
      } else {
        reply(SMFIP_NR_RCPT, filter_->recipient(*this, args_), out);
      }
      return Next::kContinue;
    }
    case SMFIC_DATA:
      reply(SMFIP_NR_DATA, filter_->data(*this), out);
      return Next::kContinue;
    case SMFIC_HEADER: {
      StatusOr<HeaderInfo> h = parseHeader(data);
      if (!h) {
        return fail(h.status().message());
      }
      reply(SMFIP_NR_HDR, filter_->header(*this, h->name, h->value), out);
      return Next::kContinue;
    }
    case SMFIC_EOH:
      reply(SMFIP_NR_EOH, filter_->endOfHeaders(*this), out);
      return Next::kContinue;
    case SMFIC_BODY:
      reply(SMFIP_NR_BODY, filter_->body(*this, data), out);
      return Next::kContinue;
    case SMFIC_BODYEOB: {
      if (!data.empty()) {
        (void)filter_->body(*this, data);  // a last chunk carried by the end of message
      }
      const std::size_t start = out->size();
      MilterModifications mods(actions_, out);
      MilterResponse response = filter_->endOfMessage(*this, &mods);
      if (response.verdict == MilterResponse::Verdict::kPending) {
        heldReply_.assign(*out, start, std::string::npos);
        out->resize(start);
        awaitingEom_ = true;
        return Next::kContinue;
      }
      finishEndOfMessage(std::move(response), out);
      return Next::kContinue;
    }
    case SMFIC_ABORT:
      filter_->abort(*this);
      inMessage_ = false;
      return Next::kContinue;
    case SMFIC_UNKNOWN: {
      Status st = splitStrings(data, &args_);
      if (!st) {
        return fail("unknown SMTP command: " + st.message());
      }
      reply(SMFIP_NR_UNKN, filter_->unknown(*this, args_.empty() ? "" : args_[0]), out);
      return Next::kContinue;
    }
    case SMFIC_QUIT:
      return endSmtpSession(/*quit=*/true);
    case SMFIC_QUIT_NC:
      return endSmtpSession(/*quit=*/false);
    default:
      return fail("unknown milter " + commandName(command));
  }
}

}  // namespace relaykit::milter

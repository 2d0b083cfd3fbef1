// SPDX-License-Identifier: Apache-2.0
// milter_session_test.cc: the milter session state machine driven packet by packet as Postfix
// (version 6, every option offered) and older MTAs drive it: negotiation, no-reply flags, macros
// per stage, leading space, end-of-message modifications and verdicts, abort, QUIT, QUIT_NC and
// protocol errors, a held end-of-message reply, and a session reset for the next connection.
// relaykit's own filter through a session: relaykit_filter_test.cc.
#include "milters/milter_session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "tests/unit/milter/milter_wire.h"

namespace relaykit::milter {
namespace {

class RecordingFilter : public MilterFilter {
 public:
  MilterWants wants;
  std::vector<std::string> calls;
  MilterResponse eom;
  std::string auth;
  std::string queueId;

  const MilterWants& negotiate(const OptionNegotiation& offer) override {
    calls.push_back("negotiate v" + std::to_string(offer.version));
    return wants;
  }
  MilterResponse connect(const MilterSession&, const ConnectInfo& info) override {
    calls.push_back("connect " + std::string(info.address));
    return MilterResponse::proceed();
  }
  MilterResponse mail(const MilterSession& s, const std::vector<std::string_view>& args) override {
    calls.push_back("mail " + std::string(args[0]));
    const std::string* a = s.macro("auth_authen");
    auth = a ? *a : "-";
    return MilterResponse::proceed();
  }
  MilterResponse recipient(const MilterSession&, const std::vector<std::string_view>& a) override {
    calls.push_back("rcpt " + std::string(a[0]));
    return a[0] == "<bad@x>" ? MilterResponse{MilterResponse::Verdict::kReject, "550 5.1.1 no"}
                             : MilterResponse::proceed();
  }
  MilterResponse header(const MilterSession&, std::string_view n, std::string_view v) override {
    calls.push_back("header " + std::string(n) + ":" + std::string(v));
    return MilterResponse::proceed();
  }
  MilterResponse body(const MilterSession&, std::string_view chunk) override {
    calls.push_back("body " + std::to_string(chunk.size()));
    return MilterResponse::of(MilterResponse::Verdict::kSkip);
  }
  MilterResponse unknown(const MilterSession&, std::string_view cmd) override {
    calls.push_back("unknown " + std::string(cmd));
    return MilterResponse::proceed();
  }
  MilterResponse endOfMessage(const MilterSession& s, MilterModifications* mods) override {
    const std::string* i = s.macro("{i}");
    queueId = i ? *i : "-";
    calls.push_back("eom");
    EXPECT_TRUE(mods->changeFrom("n@c", "RET=HDRS"));
    EXPECT_TRUE(mods->changeHeader("From", 1, nullptr));
    EXPECT_TRUE(mods->insertHeader(1, "X-A", " b"));
    EXPECT_FALSE(mods->addRecipient("<x@y>", ""));  // not asked for
    return eom;
  }
  void abort(const MilterSession&) override { calls.push_back("abort"); }
  void close(const MilterSession&) override { calls.push_back("close"); }
};

class MilterSessionTest : public ::testing::Test {
 protected:
  RecordingFilter filter;
  MilterSession session{&filter};
  std::string out;

  MilterSession::Next send(char command, const std::string& data) {
    return session.handle(command, data, &out);
  }
  std::vector<Reply> take() {
    std::vector<Reply> r = replies(out);
    out.clear();
    return r;
  }
};

TEST_F(MilterSessionTest, NegotiatesTheIntersectionAndTheLowerVersion) {
  filter.wants.actions = SMFIF_CHGFROM | SMFIF_CHGHDRS | SMFIF_ADDHDRS | SMFIF_SETSYMLIST;
  filter.wants.protocol = SMFIP_NR_HDR | SMFIP_NOBODY | SMFIP_HDR_LEADSPC;
  filter.wants.macros[SMFIM_EOM] = "i";
  ASSERT_EQ(send(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol)),
            MilterSession::Next::kContinue);
  auto r = take();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].command, SMFIC_OPTNEG);
  EXPECT_EQ(r[0].data, optneg(6, filter.wants.actions, filter.wants.protocol) + u32(SMFIM_EOM) +
                           std::string("i\0", 2));

  // An older MTA: version 2 with the v2 defaults (no SETSYMLIST, no NR flags, no LEADSPC).
  RecordingFilter old;
  old.wants = filter.wants;
  MilterSession s2(&old);
  std::string o2;
  ASSERT_EQ(s2.handle(SMFIC_OPTNEG, u32(2), &o2), MilterSession::Next::kContinue);
  auto r2 = replies(o2);
  ASSERT_EQ(r2.size(), 1u);
  EXPECT_EQ(r2[0].data,
            optneg(2, filter.wants.actions & kV1Actions, filter.wants.protocol & kV1Protocol));
  EXPECT_FALSE(s2.leadingSpace());
}

// Wants with an id: the reply built for them is kept (across reset()) and sent again for the
// same offer; a different offer, or wants with another id, get a reply built afresh.
TEST_F(MilterSessionTest, KeepsTheNegotiationReplyOfTheSameWants) {
  filter.wants.actions = SMFIF_CHGFROM | SMFIF_CHGHDRS | SMFIF_SETSYMLIST;
  filter.wants.protocol = SMFIP_NR_HDR | SMFIP_HDR_LEADSPC;
  filter.wants.macros[SMFIM_ENVFROM] = "{auth_authen}";
  filter.wants.id = 7;
  const std::string first = optneg(6, filter.wants.actions, filter.wants.protocol) +
                            u32(SMFIM_ENVFROM) + std::string("{auth_authen}\0", 14);
  const auto negotiate = [&](std::uint32_t version, std::uint32_t actions) {
    session.disconnected();
    session.reset();
    EXPECT_EQ(send(SMFIC_OPTNEG, optneg(version, actions, kPostfixProtocol)),
              MilterSession::Next::kContinue);
    auto r = take();
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? std::string() : r[0].data;
  };
  EXPECT_EQ(negotiate(6, kPostfixActions), first);
  EXPECT_EQ(negotiate(6, kPostfixActions), first);
  // Another offer: the intersection changes, and so does the reply.
  EXPECT_EQ(negotiate(6, SMFIF_CHGFROM), optneg(6, SMFIF_CHGFROM, filter.wants.protocol));
  EXPECT_EQ(negotiate(6, kPostfixActions), first);
  // Other wants under a new id.
  filter.wants.macros[SMFIM_ENVFROM] = "{mail_addr}";
  filter.wants.id = 8;
  EXPECT_EQ(negotiate(6, kPostfixActions), optneg(6, filter.wants.actions, filter.wants.protocol) +
                                               u32(SMFIM_ENVFROM) +
                                               std::string("{mail_addr}\0", 12));
  // Id 0: built every time from what the wants hold.
  filter.wants.id = 0;
  filter.wants.macros[SMFIM_ENVFROM] = "{auth_type}";
  EXPECT_EQ(negotiate(6, kPostfixActions), optneg(6, filter.wants.actions, filter.wants.protocol) +
                                               u32(SMFIM_ENVFROM) +
                                               std::string("{auth_type}\0", 12));
  filter.wants.macros[SMFIM_ENVFROM] = "{auth_authen}";
  EXPECT_EQ(negotiate(6, kPostfixActions), first);
}

TEST_F(MilterSessionTest, RefusesVersionOneAndUnknownCommands) {
  EXPECT_EQ(send(SMFIC_OPTNEG, optneg(1, 0, 0)), MilterSession::Next::kClose);
  EXPECT_EQ(session.error(), "protocol version 1 below 2");
  RecordingFilter f;
  MilterSession s(&f);
  std::string o;
  EXPECT_EQ(s.handle('z', "", &o), MilterSession::Next::kClose);
  EXPECT_EQ(s.error(), "unknown milter command 0x7a");
  EXPECT_EQ(f.calls.back(), "close");
  EXPECT_TRUE(o.empty());
}

TEST_F(MilterSessionTest, MalformedPacketsEndTheSession) {
  for (auto [cmd, data] :
       std::vector<std::pair<char, std::string>>{{SMFIC_OPTNEG, "ab"},
                                                 {SMFIC_CONNECT, std::string("h\0"
                                                                             "4",
                                                                             3)},
                                                 {SMFIC_MAIL, "<a@b>"},
                                                 {SMFIC_MAIL, ""},
                                                 {SMFIC_HEADER, "Subject"},
                                                 {SMFIC_MACRO, ""},
                                                 {SMFIC_HELO, "x"}}) {
    RecordingFilter f;
    MilterSession s(&f);
    std::string o;
    EXPECT_EQ(s.handle(cmd, data, &o), MilterSession::Next::kClose) << cmd;
    EXPECT_FALSE(s.error().empty());
  }
}

TEST_F(MilterSessionTest, NoReplyFlagsAndWholeMessage) {
  filter.wants.actions = SMFIF_CHGFROM | SMFIF_CHGHDRS | SMFIF_ADDHDRS;
  filter.wants.protocol = SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_HDR_LEADSPC;
  send(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol));
  take();
  send(SMFIC_MACRO, strings({"Cj", "relay"}));
  send(SMFIC_CONNECT, std::string("client\0"
                                  "4\0\x19"
                                  "10.1.2.3\0",
                                  19));
  send(SMFIC_MACRO, strings({"M{auth_authen}", "alice"}));
  send(SMFIC_MAIL, strings({"<a@b>", "SIZE=1"}));
  EXPECT_TRUE(out.empty());  // NR_CONN, NR_MAIL; macros never answered
  send(SMFIC_RCPT, strings({"<r@x>"}));
  send(SMFIC_RCPT, strings({"<bad@x>"}));
  auto r = take();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].command, SMFIR_CONTINUE);
  EXPECT_EQ(r[1].command, SMFIR_REPLYCODE);
  EXPECT_EQ(r[1].data, std::string("550 5.1.1 no\0", 13));
  send(SMFIC_DATA, "");
  send(SMFIC_HEADER, strings({"From", " a@b"}));
  send(SMFIC_EOH, "");
  send(SMFIC_BODY, "hello");
  r = take();
  ASSERT_EQ(r.size(), 3u);  // DATA, EOH, BODY (SKIP not negotiated: CONTINUE)
  EXPECT_EQ(r[2].command, SMFIR_CONTINUE);
  send(SMFIC_MACRO, strings({"Ei", "QID9"}));
  filter.eom = MilterResponse::of(MilterResponse::Verdict::kAccept);
  send(SMFIC_BODYEOB, "");
  r = take();
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].command, SMFIR_CHGFROM);
  EXPECT_EQ(r[0].data, strings({"<n@c>", "RET=HDRS"}));
  EXPECT_EQ(r[1].command, SMFIR_CHGHEADER);
  EXPECT_EQ(r[2].command, SMFIR_INSHEADER);
  EXPECT_EQ(r[3].command, SMFIR_ACCEPT);
  EXPECT_EQ(filter.auth, "alice");
  EXPECT_EQ(filter.queueId, "QID9");
  EXPECT_TRUE(session.leadingSpace());
  EXPECT_EQ(send(SMFIC_QUIT, ""), MilterSession::Next::kClose);
  EXPECT_EQ(session.error(), "");
  std::vector<std::string> expected = {
      "negotiate v6",     "connect 10.1.2.3", "mail <a@b>", "rcpt <r@x>", "rcpt <bad@x>",
      "header From: a@b", "body 5",           "eom",        "close"};
  EXPECT_EQ(filter.calls, expected);
}

TEST_F(MilterSessionTest, MacrosOfLaterStagesClearedByEachCommand) {
  filter.wants.protocol = SMFIP_NR_MAIL;
  send(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol));
  send(SMFIC_MACRO, strings({"Ei", "OLD"}));
  send(SMFIC_MACRO, strings({"M{auth_authen}", "bob"}));
  send(SMFIC_MAIL, strings({"<a@b>"}));
  EXPECT_EQ(session.macro("i"), nullptr);  // the previous message's queue id is gone
  ASSERT_NE(session.macro("{auth_authen}"), nullptr);
  send(SMFIC_MAIL, strings({"<a@b>"}));  // MAIL's own macros stay for MAIL
  EXPECT_EQ(*session.macro("auth_authen"), "bob");
  send(SMFIC_MACRO, strings({"Zx", "1"}));  // a stage without macros: ignored
  EXPECT_EQ(session.macro("x"), nullptr);
  // The stage byte alone (none of the stage's macros defined): the stage's earlier ones are gone
  // as a new list would replace them; for a stage without macros, ignored.
  send(SMFIC_MACRO, std::string(1, SMFIC_MAIL));
  EXPECT_EQ(session.macro("{auth_authen}"), nullptr);
  send(SMFIC_MACRO, "Z");
  EXPECT_TRUE(session.error().empty());
}

TEST_F(MilterSessionTest, MtaWithoutNegotiationGetsEveryReply) {
  send(SMFIC_CONNECT, std::string("localhost\0U", 11));
  send(SMFIC_HELO, strings({"client.example"}));
  send(SMFIC_MAIL, strings({"<a@b>"}));
  send(SMFIC_HEADER, strings({"Subject", "hi"}));
  send(SMFIC_UNKNOWN, strings({"XYZZY"}));
  auto r = take();
  ASSERT_EQ(r.size(), 5u);
  for (const Reply& x : r) {
    EXPECT_EQ(x.command, SMFIR_CONTINUE);
  }
  EXPECT_FALSE(session.leadingSpace());
  EXPECT_EQ(filter.calls.back(), "unknown XYZZY");
}

TEST_F(MilterSessionTest, AbortTwiceAndQuitNewConnection) {
  filter.wants.protocol = SMFIP_NR_MAIL;
  send(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol));
  take();
  send(SMFIC_MAIL, strings({"<a@b>"}));
  EXPECT_TRUE(session.inMessage());
  send(SMFIC_ABORT, "");
  send(SMFIC_ABORT, "");
  EXPECT_FALSE(session.inMessage());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(send(SMFIC_QUIT_NC, ""), MilterSession::Next::kContinue);
  EXPECT_EQ(filter.calls.back(), "close");
  // The next SMTP session on the same connection, with the same negotiation.
  send(SMFIC_MAIL, strings({"<c@d>"}));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(filter.calls.back(), "mail <c@d>");
  session.disconnected();
  session.disconnected();  // told once
  EXPECT_EQ(std::count(filter.calls.begin(), filter.calls.end(), "close"), 2);
}

// A session reset for the next connection (relaykit-milter reuses session state across
// connections) keeps nothing of the previous one: negotiation, macros, message, errors.
TEST_F(MilterSessionTest, ResetSessionIsANewSession) {
  filter.wants.actions = SMFIF_CHGFROM | SMFIF_CHGHDRS | SMFIF_ADDHDRS;
  filter.wants.protocol = SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_HDR_LEADSPC;
  send(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol));
  send(SMFIC_MACRO, strings({"M{auth_authen}", "mallory"}));
  send(SMFIC_MACRO, strings({"Ei", "OLDQID"}));
  send(SMFIC_MAIL, strings({"<a@b>"}));
  EXPECT_TRUE(session.inMessage());
  EXPECT_EQ(send(SMFIC_HEADER, std::string("X", 1)), MilterSession::Next::kClose);  // an error
  EXPECT_FALSE(session.error().empty());
  session.disconnected();
  session.reset();
  EXPECT_FALSE(session.negotiated());
  EXPECT_FALSE(session.inMessage());
  EXPECT_FALSE(session.awaitingEndOfMessage());
  EXPECT_EQ(session.error(), "");
  EXPECT_EQ(session.protocol(), 0u);
  EXPECT_EQ(session.version(), kMilterProtocolVersion);
  EXPECT_EQ(session.macro("auth_authen"), nullptr);
  EXPECT_EQ(session.macro("i"), nullptr);
  // The next connection runs exactly as on a new session.
  RecordingFilter freshFilter;
  MilterSession fresh(&freshFilter);
  filter.wants = MilterWants();
  filter.wants.actions = SMFIF_CHGFROM | SMFIF_CHGHDRS | SMFIF_ADDHDRS;
  filter.wants.protocol = SMFIP_NR_MAIL;  // headers answered this time
  freshFilter.wants = filter.wants;
  std::string freshOut;
  filter.calls.clear();
  take();
  const std::pair<char, std::string> packets[] = {
      {SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol)},
      {SMFIC_MAIL, strings({"<c@d>"})},
      {SMFIC_HEADER, strings({"Subject", "hi"})},
      {SMFIC_BODYEOB, ""},
  };
  for (const auto& [command, data] : packets) {
    EXPECT_EQ(send(command, data), fresh.handle(command, data, &freshOut));
  }
  EXPECT_EQ(out, freshOut);
  EXPECT_EQ(replies(out).size(), 6u);  // optneg, header, three edits, the verdict
  EXPECT_EQ(filter.calls, freshFilter.calls);
  EXPECT_EQ(filter.auth, "-");
  EXPECT_EQ(filter.queueId, "-");
  EXPECT_FALSE(session.leadingSpace());
}

// The same property on random traffic: whatever a first connection sent (valid or not, ending
// anywhere), a reset session answers a second random connection byte for byte as a new session
// does, and its filter sees the same calls (macros included).
// RecordingFilter whose end of message records which edits the session allowed instead of
// expecting them (random traffic negotiates anything, or nothing).
class TolerantFilter : public RecordingFilter {
 public:
  MilterResponse endOfMessage(const MilterSession& s, MilterModifications* mods) override {
    const std::string* i = s.macro("{i}");
    queueId = i ? *i : "-";
    calls.push_back(std::string("eom") + (mods->changeFrom("n@c", "") ? " from" : "") +
                    (mods->changeHeader("From", 1, nullptr) ? " header" : "") +
                    (mods->insertHeader(1, "X-A", " b") ? " insert" : ""));
    return eom;
  }
};

TEST(MilterSessionResetTest, RandomFirstConnectionsLeaveNothingBehind) {
  std::mt19937 rng(20261207);
  const char commands[] = {SMFIC_OPTNEG,  SMFIC_MACRO, SMFIC_CONNECT, SMFIC_HELO,    SMFIC_MAIL,
                           SMFIC_RCPT,    SMFIC_DATA,  SMFIC_HEADER,  SMFIC_EOH,     SMFIC_BODY,
                           SMFIC_BODYEOB, SMFIC_ABORT, SMFIC_QUIT_NC, SMFIC_UNKNOWN, 'Z'};
  const auto randomPacket = [&]() -> std::pair<char, std::string> {
    const char command = commands[rng() % sizeof(commands)];
    switch (command) {
      case SMFIC_OPTNEG:
        return {command, optneg(2 + rng() % 5, rng(), rng())};
      case SMFIC_MACRO: {
        const char stages[] = {SMFIC_CONNECT, SMFIC_MAIL, SMFIC_RCPT, SMFIC_BODYEOB, 'Z'};
        const char* names[] = {"i", "{auth_authen}", "j", "{i}"};
        return {command, std::string(1, stages[rng() % 5]) +
                             strings({names[rng() % 4], "v" + std::to_string(rng())})};
      }
      case SMFIC_CONNECT:
        return {command, std::string("host\0"
                                     "4\0\x01\x02"
                                     "10.0.0.1\0",
                                     15)};
      case SMFIC_MAIL:
      case SMFIC_RCPT:
        return {command, strings({"<u" + std::to_string(rng() % 100) + "@x>"})};
      case SMFIC_HELO:
        return {command, strings({"helo" + std::to_string(rng() % 100)})};
      case SMFIC_HEADER:
        return {command, strings({"H" + std::to_string(rng() % 5), " v"})};
      case SMFIC_BODY:
        return {command, std::string(rng() % 64, 'b')};
      default:
        return {command, rng() % 4 == 0 ? std::string("\x01", 1) : std::string()};
    }
  };
  for (int round = 0; round < 500; ++round) {
    TolerantFilter filter;
    MilterSession session(&filter);
    std::string out;
    filter.wants.actions = rng() & (SMFIF_CHGFROM | SMFIF_CHGHDRS | SMFIF_ADDHDRS);
    filter.wants.protocol =
        rng() & (SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_NR_RCPT | SMFIP_HDR_LEADSPC | SMFIP_NR_HELO);
    filter.wants.macros[SMFIM_EOM] = "i";
    const int first = static_cast<int>(rng() % 12);
    for (int i = 0; i < first; ++i) {
      const auto [command, data] = randomPacket();
      if (session.handle(command, data, &out) == MilterSession::Next::kClose) {
        break;
      }
    }
    session.disconnected();
    session.reset();
    filter.calls.clear();
    filter.auth = filter.queueId = "";
    out.clear();
    TolerantFilter freshFilter;
    MilterSession fresh(&freshFilter);
    std::string freshOut;
    const std::uint32_t actions = rng() & (SMFIF_CHGFROM | SMFIF_CHGHDRS | SMFIF_ADDHDRS);
    const std::uint32_t protocol = rng() & (SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_HDR_LEADSPC);
    filter.wants = MilterWants();
    filter.wants.actions = freshFilter.wants.actions = actions;
    filter.wants.protocol = freshFilter.wants.protocol = protocol;
    const int second = static_cast<int>(rng() % 12);
    for (int i = 0; i < second; ++i) {
      const auto [command, data] = randomPacket();
      const MilterSession::Next a = session.handle(command, data, &out);
      const MilterSession::Next b = fresh.handle(command, data, &freshOut);
      ASSERT_EQ(a, b) << "round " << round << " packet " << i;
      if (a == MilterSession::Next::kClose) {
        EXPECT_EQ(session.error(), fresh.error());
        break;
      }
    }
    EXPECT_EQ(out, freshOut) << "round " << round;
    EXPECT_EQ(filter.calls, freshFilter.calls) << "round " << round;
    EXPECT_EQ(filter.auth, freshFilter.auth);
    EXPECT_EQ(filter.queueId, freshFilter.queueId);
    EXPECT_EQ(session.negotiated(), fresh.negotiated()) << "round " << round;
    EXPECT_EQ(session.version(), fresh.version());
    EXPECT_EQ(session.actions(), fresh.actions());
    EXPECT_EQ(session.protocol(), fresh.protocol());
    EXPECT_EQ(session.inMessage(), fresh.inMessage());
    EXPECT_EQ(session.awaitingEndOfMessage(), fresh.awaitingEndOfMessage());
    EXPECT_EQ(session.macro("i") == nullptr, fresh.macro("i") == nullptr);
    EXPECT_EQ(session.macro("auth_authen") == nullptr, fresh.macro("auth_authen") == nullptr);
  }
}

TEST(MilterPacketDecoderResetTest, ResetDropsAPartialPacket) {
  MilterPacketDecoder d;
  const std::string packet = u32(3) + "Lab";
  d.feed(std::string_view(packet).substr(0, 5));
  EXPECT_TRUE(d.inProgress());
  d.reset();
  EXPECT_FALSE(d.inProgress());
  EXPECT_EQ(d.state(), MilterPacketDecoder::State::kNeedMore);
  EXPECT_EQ(d.feed(packet), packet.size());
  ASSERT_EQ(d.state(), MilterPacketDecoder::State::kPacket);
  EXPECT_EQ(d.command(), 'L');
  EXPECT_EQ(d.data(), "ab");
  const std::string bad = u32(0);
  d.feed(bad);
  EXPECT_EQ(d.state(), MilterPacketDecoder::State::kError);
  d.reset();
  EXPECT_EQ(d.state(), MilterPacketDecoder::State::kNeedMore);
  EXPECT_EQ(d.error(), "");
}

TEST_F(MilterSessionTest, EndOfMessageVerdicts) {
  filter.wants.actions = SMFIF_CHGFROM | SMFIF_CHGHDRS | SMFIF_ADDHDRS;
  send(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol));
  using V = MilterResponse::Verdict;
  const std::vector<std::pair<MilterResponse, char>> cases = {
      {MilterResponse::of(V::kContinue), SMFIR_CONTINUE},
      {MilterResponse::of(V::kTempfail), SMFIR_TEMPFAIL},
      {MilterResponse::of(V::kReject), SMFIR_REJECT},
      {MilterResponse::of(V::kDiscard), SMFIR_DISCARD},
      {MilterResponse{V::kTempfail, "451 4.7.1 later"}, SMFIR_REPLYCODE},
      {MilterResponse::of(V::kSkip), SMFIR_CONTINUE}};
  for (const auto& [response, expected] : cases) {
    take();
    send(SMFIC_MAIL, strings({"<a@b>"}));
    filter.eom = response;
    send(SMFIC_BODYEOB, "");
    auto r = take();
    ASSERT_FALSE(r.empty());
    EXPECT_EQ(r.back().command, expected);
  }
}

// ---- relaykit's filter through the session ----

// ---- DKIM signing: the deferred end-of-message ----

class PendingFilter : public MilterFilter {
 public:
  const MilterWants& negotiate(const OptionNegotiation&) override {
    wants_.actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
    wants_.protocol = SMFIP_HDR_LEADSPC;
    return wants_;
  }
  MilterResponse endOfMessage(const MilterSession&, MilterModifications* mods) override {
    EXPECT_TRUE(mods->changeHeader("X-Old", 1, nullptr));
    return MilterResponse::pending();
  }
  MilterResponse resumeEndOfMessage(const MilterSession&, MilterModifications* mods) override {
    EXPECT_TRUE(mods->insertHeader(0, "DKIM-Signature", " v=1"));
    return MilterResponse::proceed();
  }

 private:
  MilterWants wants_;
};

TEST(MilterSessionPendingTest, HoldsTheModificationsUntilResumed) {
  PendingFilter filter;
  MilterSession session(&filter);
  std::string out;
  session.handle(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol), &out);
  out.clear();
  session.handle(SMFIC_MAIL, strings({"<a@b>"}), &out);
  out.clear();
  session.handle(SMFIC_BODYEOB, "", &out);
  EXPECT_TRUE(out.empty());  // nothing sent while the signature is made
  EXPECT_TRUE(session.awaitingEndOfMessage());
  EXPECT_TRUE(session.inMessage());
  // Postfix sends nothing meanwhile; a command now is a protocol error.
  MilterSession other(&filter);
  std::string o2;
  other.handle(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol), &o2);
  other.handle(SMFIC_MAIL, strings({"<a@b>"}), &o2);
  other.handle(SMFIC_BODYEOB, "", &o2);
  EXPECT_EQ(other.handle(SMFIC_ABORT, "", &o2), MilterSession::Next::kClose);
  session.resumeEndOfMessage(&out);
  auto r = replies(out);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].command, SMFIR_CHGHEADER);
  EXPECT_EQ(r[1].command, SMFIR_INSHEADER);
  EXPECT_EQ(r[1].data, u32(0) + strings({"DKIM-Signature", " v=1"}));
  EXPECT_EQ(r[2].command, SMFIR_CONTINUE);
  EXPECT_FALSE(session.awaitingEndOfMessage());
  EXPECT_FALSE(session.inMessage());
  out.clear();
  session.resumeEndOfMessage(&out);  // not waiting: nothing
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace relaykit::milter

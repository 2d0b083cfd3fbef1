// SPDX-License-Identifier: Apache-2.0
// relaykit_filter_test.cc: relaykit's own filter (RelaykitFilter) driven through a milter session
// as Postfix drives it, with the seed rules: the edits over the wire, refused modifications,
// reuse for the next connection, and DKIM signing off the session.
#include "milters/milter_callbacks.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "common/config.h"
#include "milters/dkim_key.h"
#include "milters/dkim_verify.h"
#include "milters/milter_session.h"
#include "tests/unit/milter/milter_wire.h"

namespace relaykit::milter {
namespace {

const char kSeed[] = R"(
postfix:
  local_domains: [relay.corp.local, localhost]
tables:
  generic:
    search: address
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
milter:
  header_checks: |
    /^X-Originating-IP:/ IGNORE
  rewrite_from:
    table: generic
  rewrite_sender:
    table: generic
)";

std::uint32_t negotiatedProtocol(const std::string& out) {
  auto r = replies(out);
  EXPECT_EQ(r.size(), 1u);
  const std::string& d = r.at(0).data;
  return static_cast<std::uint32_t>(
      (static_cast<unsigned char>(d[8]) << 24) | (static_cast<unsigned char>(d[9]) << 16) |
      (static_cast<unsigned char>(d[10]) << 8) | static_cast<unsigned char>(d[11]));
}

// Compiles kSeed and makes it the active milter configuration; false (with the diagnostics
// reported) when it does not load.
bool installSeedConfig() {
  Diagnostics diags;
  auto config = loadConfigText(kSeed, "seed.yaml", &diags);
  auto mc = config ? parseMilterConfig(config, &diags) : nullptr;
  if (!mc) {
    ADD_FAILURE() << diags.formatAll();
    return false;
  }
  setActiveConfig(mc);
  return true;
}

TEST(RelaykitFilterTest, SeedRulesOverTheWire) {
  ASSERT_TRUE(installSeedConfig());
  RelaykitFilter filter;
  MilterSession session(&filter);
  std::string out;
  session.handle(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol), &out);
  ASSERT_EQ(replies(out).size(), 1u);
  const std::uint32_t protocol = negotiatedProtocol(out);
  EXPECT_TRUE(protocol & SMFIP_NOCONNECT);  // no client condition in the rules
  EXPECT_TRUE(protocol & SMFIP_HDR_LEADSPC);
  EXPECT_TRUE(protocol & SMFIP_NR_HDR);
  out.clear();
  session.handle(SMFIC_MAIL, strings({"<root@relay.corp.local>", "RET=HDRS"}), &out);
  session.handle(SMFIC_HEADER, strings({"From", " Root <root@relay.corp.local>"}), &out);
  session.handle(SMFIC_HEADER, strings({"X-Originating-IP", " 10.0.0.1"}), &out);
  session.handle(SMFIC_MACRO, strings({"Ei", "4QID"}), &out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(activeMessages(), 1);
  session.handle(SMFIC_BODYEOB, "", &out);
  EXPECT_EQ(activeMessages(), 0);
  auto r = replies(out);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].command, SMFIR_CHGHEADER);  // X-Originating-IP removed (last header first)
  EXPECT_EQ(r[0].data, u32(1) + strings({"X-Originating-IP", ""}));
  EXPECT_EQ(r[1].command, SMFIR_CHGHEADER);
  EXPECT_EQ(r[1].data, u32(1) + strings({"From", " Root <noreply@corp.com>"}));
  EXPECT_EQ(r[2].command, SMFIR_CHGFROM);
  EXPECT_EQ(r[2].data, strings({"<noreply@corp.com>", "RET=HDRS"}));
  EXPECT_EQ(r[3].command, SMFIR_CONTINUE);
  setActiveConfig(nullptr);
}

// relaykit-milter keeps a connection's filter and session for the next connection: after a
// message (and one left unfinished), reset() gives the seed rules' answers of a new filter.
TEST(RelaykitFilterTest, ResetFilterAnswersAsANewOne) {
  ASSERT_TRUE(installSeedConfig());
  const auto run = [](MilterSession& session, const std::string& sender) {
    std::string out;
    session.handle(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol), &out);
    session.handle(SMFIC_MACRO, strings({"M{auth_authen}", "someone"}), &out);
    session.handle(SMFIC_MAIL, strings({"<" + sender + ">"}), &out);
    session.handle(SMFIC_HEADER, strings({"From", " Root <" + sender + ">"}), &out);
    session.handle(SMFIC_HEADER, strings({"X-Originating-IP", " 10.0.0.1"}), &out);
    session.handle(SMFIC_MACRO, strings({"Ei", "4QID"}), &out);
    session.handle(SMFIC_BODYEOB, "", &out);
    return out;
  };
  RelaykitFilter reused;
  MilterSession session(&reused);
  run(session, "cron@relay.corp.local");
  std::string unfinished;
  session.handle(SMFIC_MAIL, strings({"<nagios@relay.corp.local>"}), &unfinished);
  session.handle(SMFIC_HEADER, strings({"Subject", " left in the middle"}), &unfinished);
  EXPECT_EQ(activeMessages(), 1);
  session.disconnected();
  session.reset();
  reused.reset(activeConfig());
  const std::string again = run(session, "root@relay.corp.local");
  RelaykitFilter fresh;
  MilterSession freshSession(&fresh);
  EXPECT_EQ(again, run(freshSession, "root@relay.corp.local"));
  EXPECT_NE(again.find("noreply@corp.com"), std::string::npos);
  EXPECT_EQ(activeMessages(), 0);
  setActiveConfig(nullptr);
}

// A filter keeps its message's storage for the next message: message after message on one
// connection (an aborted one, one with more headers than are kept between messages among them),
// each is answered as a new connection answers that message alone, and none sees another's
// headers.
TEST(RelaykitFilterTest, MessagesOnOneConnectionAnswerAsAlone) {
  ASSERT_TRUE(installSeedConfig());
  struct Message {
    std::string sender;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i < 300; ++i) {
    many.emplace_back("X-Originating-IP", " 10.0.0." + std::to_string(i % 250));
  }
  many.emplace_back("From", " <root@relay.corp.local>");
  const std::vector<Message> messages = {
      {"root@relay.corp.local",
       {{"From", " Root <root@relay.corp.local>"}, {"X-Originating-IP", " 10.0.0.1"}}},
      {"someone@else.example", {{"Subject", " nothing to change"}}},
      {"root@relay.corp.local", many},
      {"cron@relay.corp.local", {{"From", " <root@relay.corp.local>"}, {"To", " <a@b.example>"}}},
      {"", {{"X-Originating-IP", " 10.0.0.2"}}},
  };
  const auto send = [](MilterSession& session, const Message& m, bool finish) {
    std::string out;
    session.handle(SMFIC_MAIL, strings({"<" + m.sender + ">"}), &out);
    for (const auto& [name, value] : m.headers) {
      session.handle(SMFIC_HEADER, strings({name, value}), &out);
    }
    if (!finish) {
      session.handle(SMFIC_ABORT, "", &out);
      return out;
    }
    session.handle(SMFIC_MACRO, strings({"Ei", "QID"}), &out);
    session.handle(SMFIC_BODYEOB, "", &out);
    session.handle(SMFIC_ABORT, "", &out);
    return out;
  };
  const auto alone = [&](const Message& m) {
    RelaykitFilter filter;
    MilterSession session(&filter);
    std::string out;
    session.handle(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol), &out);
    return send(session, m, true);
  };
  RelaykitFilter filter;
  MilterSession session(&filter);
  std::string out;
  session.handle(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol), &out);
  for (int round = 0; round < 2; ++round) {
    for (std::size_t i = 0; i < messages.size(); ++i) {
      SCOPED_TRACE("round " + std::to_string(round) + ", message " + std::to_string(i));
      EXPECT_EQ(send(session, messages[i], true), alone(messages[i]));
      EXPECT_EQ(activeMessages(), 0);
      send(session, messages[(i + 1) % messages.size()], false);  // begun, then aborted
      EXPECT_EQ(activeMessages(), 0);
    }
  }
  EXPECT_EQ(replies(alone(messages[2])).size(), 303u);  // 300 removed, From, sender, verdict
  setActiveConfig(nullptr);
}

TEST(RelaykitFilterTest, RefusedModificationsSendNoneAndApplyOnError) {
  ASSERT_TRUE(installSeedConfig());
  RelaykitFilter filter;
  MilterSession session(&filter);
  std::string out;
  // An MTA that allows header changes but not sender changes.
  session.handle(SMFIC_OPTNEG, optneg(6, SMFIF_CHGHDRS | SMFIF_ADDHDRS, kPostfixProtocol), &out);
  out.clear();
  session.handle(SMFIC_MAIL, strings({"<root@relay.corp.local>"}), &out);
  session.handle(SMFIC_HEADER, strings({"X-Originating-IP", " 10.0.0.1"}), &out);
  session.handle(SMFIC_BODYEOB, "", &out);
  auto r = replies(out);
  ASSERT_EQ(r.size(), 1u);  // nothing half-applied
  EXPECT_EQ(r[0].command, SMFIR_TEMPFAIL);
  setActiveConfig(nullptr);
}

TEST(RelaykitFilterTest, SignsTheRewrittenMessageOffTheSession) {
  char tmpl[] = "/tmp/milter_sign_test.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto key = *dkim::DkimKey::generate(dkim::DkimAlgorithm::kEd25519Sha256, 0);
  const std::string keyFile = dir + "/ed.pem";
  std::ofstream(keyFile) << key->privateKeyPem();
  ::chmod(keyFile.c_str(), 0600);
  const std::string yaml = std::string(kSeed) +
                           "  dkim:\n    sign: all\n    canonicalization: simple/simple\n"
                           "    keys:\n      - {domain: corp.com, selector: ed, key_file: " +
                           keyFile + "}\n";
  Diagnostics diags;
  auto config = loadConfigText(yaml, "seed.yaml", &diags);
  ASSERT_TRUE(config) << diags.formatAll();
  auto mc = parseMilterConfig(config, &diags);
  ASSERT_TRUE(mc) << diags.formatAll();
  std::system(("rm -rf " + dir).c_str());  // the key is loaded
  setActiveConfig(mc);
  RelaykitFilter filter;
  MilterSession session(&filter);
  std::string out;
  session.handle(SMFIC_OPTNEG, optneg(6, kPostfixActions, kPostfixProtocol), &out);
  const std::uint32_t protocol = negotiatedProtocol(out);
  EXPECT_FALSE(protocol & SMFIP_NOBODY);  // the body is hashed
  EXPECT_FALSE(protocol & SMFIP_NOHDRS);
  EXPECT_FALSE(protocol & SMFIP_NOCONNECT);  // sign: networks needs the client
  EXPECT_TRUE(protocol & SMFIP_HDR_LEADSPC);
  EXPECT_TRUE(protocol & SMFIP_NR_BODY);
  out.clear();
  session.handle(
      SMFIC_CONNECT,
      strings({"client.example"}) + "4" + std::string("\0\x19", 2) + strings({"10.1.2.3"}), &out);
  session.handle(SMFIC_MAIL, strings({"<root@relay.corp.local>"}), &out);
  session.handle(SMFIC_HEADER, strings({"From", " Root <root@relay.corp.local>"}), &out);
  session.handle(SMFIC_HEADER, strings({"X-Originating-IP", " 10.0.0.1"}), &out);
  session.handle(SMFIC_HEADER, strings({"Subject", "  two  spaces"}), &out);
  session.handle(SMFIC_BODY, "line one\r\n", &out);
  session.handle(SMFIC_BODY, "line two\r\n", &out);
  session.handle(SMFIC_MACRO, strings({"Ei", "4QID"}), &out);
  EXPECT_TRUE(out.empty());
  session.handle(SMFIC_BODYEOB, "", &out);
  EXPECT_TRUE(out.empty());  // waiting for the signature
  ASSERT_TRUE(session.awaitingEndOfMessage());
  std::optional<dkim::SignJob> job = filter.takeSignJob();
  ASSERT_TRUE(job);
  EXPECT_FALSE(filter.takeSignJob());  // one job
  // The final headers: X-Originating-IP removed, From rewritten, values with their space.
  ASSERT_EQ(job->headers.size(), 2u);
  EXPECT_EQ(job->headers[0].value, " Root <noreply@corp.com>");
  EXPECT_EQ(job->headers[1].value, "  two  spaces");
  filter.setSignResult(job->signer->sign(job->specs, job->headers));
  session.resumeEndOfMessage(&out);
  auto r = replies(out);
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0].command, SMFIR_CHGHEADER);
  EXPECT_EQ(r[1].command, SMFIR_CHGHEADER);
  EXPECT_EQ(r[2].command, SMFIR_CHGFROM);
  ASSERT_EQ(r[3].command, SMFIR_INSHEADER);
  EXPECT_EQ(r[3].data.substr(0, 4), u32(0));
  EXPECT_EQ(r[4].command, SMFIR_CONTINUE);
  // The inserted value verifies over the message as Postfix will deliver it.
  const std::string ins = r[3].data.substr(4);
  const std::string name = ins.substr(0, ins.find('\0'));
  std::string value = ins.substr(name.size() + 1);
  value.pop_back();  // its NUL
  EXPECT_EQ(name, "DKIM-Signature");
  EXPECT_EQ(value.substr(0, 6), " v=1; ");
  std::vector<dkim::DkimHeader> delivered = {
      {name, value}, {"From", " Root <noreply@corp.com>"}, {"Subject", "  two  spaces"}};
  auto results = dkim::verifyMessage(
      delivered, "line one\r\nline two\r\n",
      [&](const std::string&, const std::string&,
          dkim::DkimAlgorithm) -> StatusOr<std::shared_ptr<const dkim::DkimKey>> { return key; });
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].pass) << results[0].reason;
  EXPECT_EQ(activeMessages(), 0);
  setActiveConfig(nullptr);
}

}  // namespace
}  // namespace relaykit::milter

// SPDX-License-Identifier: Apache-2.0
// postfix_parsing_test.cc: the pure parsers behind `relaykit postconf` and `relaykit health`:
// Postfix lists with { } groups, postconf -x / -M output, relayhost forms, postqueue -j records,
// and the wiring printed for a configuration.
#include <gtest/gtest.h>

#include "cli/health_probes.h"
#include "cli/postfix_wiring.h"
#include "common/config.h"

namespace relaykit {
namespace {

TEST(PostfixListTest, SplitsOnCommasAndSpacesKeepingBraceGroups) {
  auto items = splitPostfixList(
      "permit_mynetworks,reject_unauth_destination  check_policy_service "
      "{ inet:127.0.0.1:10043, timeout=10s, default_action=DUNNO }, permit");
  ASSERT_EQ(items.size(), 5u);
  EXPECT_EQ(items[0], "permit_mynetworks");
  EXPECT_EQ(items[2], "check_policy_service");
  EXPECT_EQ(items[3], "{ inet:127.0.0.1:10043, timeout=10s, default_action=DUNNO }");
  EXPECT_EQ(items[4], "permit");
}

TEST(PostconfOutputTest, ParsesValuesContinuationsAndEmptyOnes) {
  auto params = parsePostconf(
      "relayhost = [smtp.example]:587\nmydestination =\nsmtpd_recipient_restrictions = a,\n"
      "    b\n");
  EXPECT_EQ(params["relayhost"], "[smtp.example]:587");
  EXPECT_EQ(params.count("mydestination"), 1u);
  EXPECT_EQ(params["mydestination"], "");
  EXPECT_EQ(params["smtpd_recipient_restrictions"], "a, b");
}

TEST(PostconfOutputTest, ParsesMasterServices) {
  auto services = parseMasterServices(
      "smtp       inet  n       -       y       -       -       smtpd\n"
      "  -o smtpd_sasl_auth_enable=yes\n"
      "rewrite    unix  -       -       y       -       -       trivial-rewrite\n"
      "# a comment\n"
      "bad line\n");
  ASSERT_EQ(services.size(), 2u);
  EXPECT_EQ(services[0].name, "smtp");
  EXPECT_EQ(services[0].chroot, "y");
  EXPECT_EQ(services[0].command, "smtpd");
  EXPECT_EQ(services[1].command, "trivial-rewrite");
}

TEST(RelayhostTest, Forms) {
  auto a = parseRelayhost("[smtp.office365.com]:587");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->host, "smtp.office365.com");
  EXPECT_EQ(a->port, 587);
  auto b = parseRelayhost("mail.example.com");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->host, "mail.example.com");
  EXPECT_EQ(b->port, 25);
  auto c = parseRelayhost("[ipv6:2001:db8::1]:2525, [backup]:25");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->host, "2001:db8::1");
  EXPECT_EQ(c->port, 2525);
  EXPECT_FALSE(parseRelayhost("").has_value());
  EXPECT_FALSE(parseRelayhost("[host]:submission").has_value());
  EXPECT_FALSE(parseRelayhost("[host]:99999").has_value());
}

TEST(PostqueueJsonTest, CountsDeferredOldestAndEachIdOnce) {
  const char* text =
      "{\"queue_name\": \"deferred\", \"queue_id\": \"A1\", \"arrival_time\": 1700000100, "
      "\"message_size\": 10, \"sender\": \"\\\"queue_name\\\": \\\"active\\\"@x\"}\n"
      "{\"queue_name\": \"active\", \"queue_id\": \"B2\", \"arrival_time\": 1700000050}\n"
      "{\"queue_name\": \"deferred\", \"queue_id\": \"A1\", \"arrival_time\": 1700000100}\n";
  auto stats = parsePostqueueJson(text);
  ASSERT_TRUE(stats.has_value());
  EXPECT_EQ(stats->size, 2);
  EXPECT_EQ(stats->deferred, 1);
  EXPECT_EQ(stats->oldestArrival, 1700000050);
  auto empty = parsePostqueueJson("");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->size, 0);
  EXPECT_FALSE(empty->oldestArrival.has_value());
  EXPECT_FALSE(parsePostqueueJson("postqueue: warning: something\n").has_value());
}

TEST(WiringTest, UnixEndpointsUnderTheQueueDirectoryAreRelative) {
  Endpoint ep;
  ep.kind = Endpoint::Kind::kUnix;
  ep.path = "/var/spool/postfix/private/relaykit-milter";
  EXPECT_EQ(postfixEndpointText(ep, "/var/spool/postfix"), "unix:private/relaykit-milter");
  ep.path = "/run/relaykit/milter.sock";
  EXPECT_EQ(postfixEndpointText(ep, "/var/spool/postfix"), "unix:/run/relaykit/milter.sock");
  Endpoint any = *Endpoint::parse("inet:0.0.0.0:10041");
  EXPECT_EQ(postfixEndpointText(any, "/var/spool/postfix"), "inet:127.0.0.1:10041");
}

TEST(WiringTest, EveryLineIsAssignmentOrComment) {
  Diagnostics diags;
  auto config = loadConfigText(
      "tables:\n"
      "  transport: {search: transport, sources: [{entries: {a.example: \"smtp:[h]:25\"}}]}\n"
      "  sender_relay: {search: sender, sources: [{entries: {a@b: \"[h]:25\"}}]}\n"
      "  generic: {search: address, sources: [{entries: {a@b: c@d}}]}\n"
      "  canonical: {search: address, sources: [{entries: {a@b: c@d}}]}\n"
      "  plain: {sources: [{entries: {k: v}}]}\n"
      "policy:\n  listen: unix:/var/spool/postfix/private/relaykit-policy\n",
      "t.yaml", &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  WiringInputs in;
  in.config = config.get();
  const std::string text = wiringFor(in);
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    EXPECT_TRUE(line.rfind("#", 0) == 0 || line.find(" = ") != std::string::npos) << line;
  }
  EXPECT_NE(text.find("\ntransport_maps = socketmap:inet:127.0.0.1:10041:transport\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nsender_canonical_maps = socketmap:inet:127.0.0.1:10041:canonical\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nsmtp_generic_maps = socketmap:inet:127.0.0.1:10041:generic\n"),
            std::string::npos);
  EXPECT_NE(text.find("# table plain (search: exact)"), std::string::npos);
  EXPECT_NE(text.find("smtpd_recipient_restrictions = check_policy_service { "
                      "unix:private/relaykit-policy, timeout=10s, default_action=DUNNO }"),
            std::string::npos);
  EXPECT_EQ(text.find("smtpd_milters"), std::string::npos);  // no milter section
  EXPECT_EQ(text.find("# master.cf"), std::string::npos);
}

// Each job once: tables the milter already applies before the queue are not wired again, and
// the policy service is asked at RCPT only when a rule needs the recipients.
TEST(WiringTest, JobsTheMilterDoesAreNotWiredTwice) {
  Diagnostics diags;
  auto config = loadConfigText(
      "tables:\n"
      "  generic: {search: address, sources: [{entries: {a@b: c@d}}]}\n"
      "  canonical: {search: address, sources: [{entries: {a@b: c@d}}]}\n"
      "milter: {}\n"
      "policy: {}\n",
      "t.yaml", &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  WiringInputs in;
  in.config = config.get();
  in.rewriteSenderTable = "canonical";
  in.rewriteFromTable = "generic";
  in.policyNeedsRcpt = false;
  std::string text = wiringFor(in);
  EXPECT_EQ(text.find("\nsmtp_generic_maps ="), std::string::npos) << text;
  EXPECT_EQ(text.find("\nsender_canonical_maps ="), std::string::npos) << text;
  EXPECT_NE(text.find("# table generic: applied by relaykit-milter's rewrite_from"),
            std::string::npos);
  EXPECT_EQ(text.find("\nsmtpd_recipient_restrictions ="), std::string::npos) << text;
  EXPECT_NE(text.find("\nsmtpd_end_of_data_restrictions = check_policy_service"),
            std::string::npos);

  // rewrite_from without rewrite_sender: the envelope sender still needs smtp_generic_maps.
  in.rewriteSenderTable.clear();
  in.policyNeedsRcpt = true;
  text = wiringFor(in);
  EXPECT_NE(text.find("\nsmtp_generic_maps = socketmap:inet:127.0.0.1:10041:generic"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\nsmtpd_recipient_restrictions = check_policy_service"), std::string::npos);
}

}  // namespace
}  // namespace relaykit

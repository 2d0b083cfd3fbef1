// SPDX-License-Identifier: Apache-2.0
// key_integrity_test.cc: one principal, one counter, through the config: per-limit
// recipient_delimiter (default, from the postfix: section, disabled), IPv4-mapped clients in
// keys and in client rules alike.
#include <gtest/gtest.h>

#include "policyd/memory_store.h"
#include "policyd/policy_engine.h"

namespace relaykit::policy {
namespace {

std::shared_ptr<const PolicyConfig> parse(const std::string& yaml, Diagnostics* diags) {
  std::shared_ptr<const Config> config = loadConfigText(yaml, "test.yaml", diags);
  return config == nullptr ? nullptr : parsePolicyConfig(*config, diags);
}

std::shared_ptr<const PolicyConfig> parseOk(const std::string& yaml) {
  Diagnostics diags;
  auto config = parse(yaml, &diags);
  EXPECT_NE(config, nullptr) << diags.formatAll();
  return config;
}

PolicyRequest eom(const std::string& sender, const std::string& client = "10.0.0.1") {
  PolicyRequest r;
  r.add("request", "smtpd_access_policy");
  r.add("protocol_state", "END-OF-MESSAGE");
  r.add("sender", sender);
  r.add("client_address", client);
  r.add("recipient_count", "1");
  return r;
}

std::string keyOf(const PolicyConfig& config, const PolicyRequest& request, std::size_t i = 0) {
  Plan plan = planRequest(config, request);
  return i < plan.store.charges.size() ? plan.store.charges[i].key : std::string("(none)");
}

const char* kLimits = R"(
policy:
  limits:
    - {name: default, key: [sender], max: 2, per: 1h}
    - {name: minus, key: [sender], max: 2, per: 1h, recipient_delimiter: "-+"}
    - {name: none, key: [sender], max: 2, per: 1h, recipient_delimiter: ""}
)";

TEST(KeyIntegrity, PerSenderLimitIsNotEvadedWithExtensions) {
  auto c = parseOk(kLimits);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->limits[0].recipientDelimiter, "+");
  EXPECT_EQ(keyOf(*c, eom("user+1@corp.com")), keyOf(*c, eom("user@corp.com")));
  EXPECT_EQ(keyOf(*c, eom("User+2@Corp.com")), keyOf(*c, eom("user@corp.com")));
  EXPECT_NE(keyOf(*c, eom("user-2@corp.com")), keyOf(*c, eom("user@corp.com")));
  EXPECT_EQ(keyOf(*c, eom("user-2@corp.com"), 1), keyOf(*c, eom("user@corp.com"), 1));
  EXPECT_NE(keyOf(*c, eom("user+1@corp.com"), 2), keyOf(*c, eom("user@corp.com"), 2));
  // End to end through the memory store: a third message from user+N is refused.
  MemoryStore store([] { return 1700000000000000; });
  for (const char* sender : {"user+1@corp.com", "user+2@corp.com"}) {
    Plan plan = planRequest(*c, eom(sender));
    plan.store.charges.resize(1);
    ASSERT_TRUE(store.evaluateNow(plan.store)->committed) << sender;
  }
  Plan plan = planRequest(*c, eom("user+3@corp.com"));
  plan.store.charges.resize(1);
  EXPECT_FALSE(store.evaluateNow(plan.store)->committed);
}

TEST(KeyIntegrity, DefaultDelimiterComesFromThePostfixSection) {
  auto c = parseOk(std::string("postfix:\n  recipient_delimiter: \"-\"\n") + kLimits);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->limits[0].recipientDelimiter, "-");
  EXPECT_EQ(keyOf(*c, eom("user-x@corp.com")), keyOf(*c, eom("user@corp.com")));
  EXPECT_NE(keyOf(*c, eom("user+x@corp.com")), keyOf(*c, eom("user@corp.com")));
  EXPECT_EQ(c->limits[2].recipientDelimiter, "");
}

TEST(KeyIntegrity, BadDelimiterSetIsReported) {
  Diagnostics diags;
  EXPECT_EQ(parse("policy:\n  limits:\n    - {name: a, key: [sender], max: 1, per: 1h, "
                  "recipient_delimiter: \"+@\"}\n",
                  &diags),
            nullptr);
  EXPECT_NE(diags.formatAll().find("recipient_delimiter: at most 16 characters, not '@'"),
            std::string::npos)
      << diags.formatAll();
}

// Rate keys and client: rules parse client addresses with the same parser.
TEST(KeyIntegrity, MappedIpv4ClientMatchesRulesAndKeysAlike) {
  auto c = parseOk(R"(
policy:
  exempt:
    clients: [192.0.2.0/24]
  limits:
    - {name: net, key: [client_address/24], max: 2, per: 1h}
    - {name: host, key: [client_address], max: 2, per: 1h}
  relay:
    - {sender: "@corp.com", client: [198.51.100.0/24], filter: "smtp:[alerts]:25"}
)");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(planRequest(*c, eom("a@x.org", "::ffff:192.0.2.9")).exempt);
  EXPECT_EQ(planRequest(*c, eom("a@corp.com", "::ffff:198.51.100.7")).filter,
            "FILTER smtp:[alerts]:25");
  EXPECT_EQ(keyOf(*c, eom("a@x.org", "::ffff:203.0.113.9")),
            keyOf(*c, eom("a@x.org", "203.0.113.1")));
  EXPECT_EQ(keyOf(*c, eom("a@x.org", "::ffff:203.0.113.9"), 1),
            keyOf(*c, eom("a@x.org", "203.0.113.9"), 1));
  // Two different mapped clients are two principals (not one "::/64").
  EXPECT_NE(keyOf(*c, eom("a@x.org", "::ffff:203.0.113.9")),
            keyOf(*c, eom("a@x.org", "::ffff:198.18.0.1")));
}

}  // namespace
}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// plan_reuse_test.cc: planning into a reused Plan, and the engine's per-thread principal cache,
// give exactly the charges a fresh plan computed from principalOf() and storeKeyFor() gives.
#include <gtest/gtest.h>

#include <random>

#include "policyd/policy_engine.h"

namespace relaykit::policy {
namespace {

std::shared_ptr<const PolicyConfig> parseOk(const std::string& yaml) {
  Diagnostics diags;
  std::shared_ptr<const Config> config = loadConfigText(yaml, "test.yaml", &diags);
  EXPECT_NE(config, nullptr) << diags.formatAll();
  std::shared_ptr<const PolicyConfig> policy =
      config == nullptr ? nullptr : parsePolicyConfig(*config, &diags);
  EXPECT_NE(policy, nullptr) << diags.formatAll();
  return policy;
}

std::string configText(const std::string& delimiter) {
  return R"(
policy:
  store: memory
  exempt:
    senders: ["monitoring@corp.com"]
  limits:
    - name: per-sender
      key: [sender]
      recipient_delimiter: ")" +
         delimiter + R"("
      count: messages
      max: 100
      per: 1m
    - name: per-domain
      key: [sender_domain]
      count: recipients
      max: 1000
      per: 1h
    - name: per-net-user
      key: [client_address/24, sasl_username]
      count: bytes
      max: 100000000
      per: 1d
      warn_only: true
    - name: per-rcpt-domain
      key: [recipient_domain]
      count: messages
      max: 50
      per: 1m
  relay:
    - sender: nagios@relay.corp.local
      filter: "smtp:[127.0.0.1]:2525"
)";
}

PolicyRequest randomRequest(std::mt19937& rng) {
  static const char* kStates[] = {"RCPT", "END-OF-MESSAGE", "DATA", "CONNECT"};
  static const char* kSenders[] = {"a+x@corp.com",        "a-y@corp.com",
                                   "A@Corp.com",          "nagios@relay.corp.local",
                                   "monitoring@corp.com", "",
                                   "b@other.example"};
  static const char* kClients[] = {"10.0.0.1", "10.0.0.200", "::ffff:10.0.0.7", "192.0.2.1", ""};
  static const char* kUsers[] = {"", "alice", "Bob"};
  static const char* kRecipients[] = {"x@partner.com", "", "y@Partner.com", "z@else.example"};
  PolicyRequest r;
  r.add("request", "smtpd_access_policy");
  r.add("protocol_state", kStates[rng() % 4]);
  std::string sender = kSenders[rng() % 7];
  if (rng() % 20 == 0) {
    sender = std::string(600, 's') + "@long.example";  // beyond the cache's input bound
  }
  r.add("sender", sender);
  r.add("client_address", kClients[rng() % 5]);
  r.add("sasl_username", kUsers[rng() % 3]);
  r.add("recipient", kRecipients[rng() % 4]);
  r.add("recipient_count", std::to_string(rng() % 5));
  r.add("size", std::to_string(rng() % 100000));
  return r;
}

void expectSamePlan(const Plan& fresh, const Plan& reused) {
  EXPECT_EQ(fresh.stage, reused.stage);
  EXPECT_EQ(fresh.exempt, reused.exempt);
  EXPECT_EQ(fresh.filter, reused.filter);
  EXPECT_EQ(fresh.store.commit, reused.store.commit);
  ASSERT_EQ(fresh.rules, reused.rules);
  ASSERT_EQ(fresh.store.charges.size(), reused.store.charges.size());
  for (std::size_t i = 0; i < fresh.store.charges.size(); ++i) {
    const StoreCharge& a = fresh.store.charges[i];
    const StoreCharge& b = reused.store.charges[i];
    EXPECT_EQ(a.key, b.key);
    EXPECT_EQ(a.cost, b.cost);
    EXPECT_EQ(a.enforce, b.enforce);
    ASSERT_EQ(a.windows.size(), b.windows.size());
    for (std::size_t w = 0; w < a.windows.size(); ++w) {
      EXPECT_EQ(a.windows[w].max, b.windows[w].max);
      EXPECT_EQ(a.windows[w].periodUs, b.windows[w].periodUs);
    }
  }
}

// Two snapshots whose per-sender limit differs only in its extension delimiter (a reload):
// the same request gives different principals under each, and the cache must not mix them up.
TEST(PlanReuse, MatchesPrincipalOfAndStoreKeyForAcrossReloads) {
  const auto plus = parseOk(configText("+"));
  const auto minus = parseOk(configText("-"));
  ASSERT_NE(plus, nullptr);
  ASSERT_NE(minus, nullptr);
  std::mt19937 rng(11);
  Plan reused;
  for (int i = 0; i < 3000; ++i) {
    const PolicyConfig& config = rng() % 2 == 0 ? *plus : *minus;
    const PolicyRequest request = randomRequest(rng);
    planRequest(config, request, nullptr, &reused);
    const Plan fresh = planRequest(config, request);
    expectSamePlan(fresh, reused);
    ASSERT_EQ(reused.rules.size(), reused.store.charges.size());
    for (std::size_t c = 0; c < reused.rules.size(); ++c) {
      const LimitRule& rule = *reused.rules[c];
      const std::optional<std::string> principal = principalOf(rule.key, request);
      ASSERT_TRUE(principal.has_value()) << rule.name;
      EXPECT_EQ(reused.store.charges[c].key, storeKeyFor(*principal, rule.name)) << rule.name;
    }
  }
}

TEST(PlanReuse, ExtensionsFoldPerSnapshot) {
  const auto plus = parseOk(configText("+"));
  const auto minus = parseOk(configText("-"));
  PolicyRequest request;
  request.add("protocol_state", "RCPT");
  request.add("sender", "a+x@corp.com");
  Plan a;
  Plan b;
  planRequest(*plus, request, nullptr, &a);
  planRequest(*minus, request, nullptr, &b);
  ASSERT_FALSE(a.store.charges.empty());
  ASSERT_FALSE(b.store.charges.empty());
  EXPECT_EQ(a.store.charges[0].key, storeKeyFor("sender=a@corp.com", "per-sender"));
  EXPECT_EQ(b.store.charges[0].key, storeKeyFor("sender=a+x@corp.com", "per-sender"));
}

}  // namespace
}  // namespace relaykit::policy

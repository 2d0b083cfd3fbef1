// SPDX-License-Identifier: Apache-2.0
// engine_test.cc: config parsing, stage semantics, exemptions, FILTER, reply text, fail modes.
#include <gtest/gtest.h>

#include "policyd/memory_store.h"
#include "policyd/policy_engine.h"

namespace relaykit::policy {

bool operator==(const RateWindow& a, const RateWindow& b) {
  return a.max == b.max && a.periodUs == b.periodUs;
}

namespace {

std::shared_ptr<const PolicyConfig> parse(const std::string& yaml, Diagnostics* diags) {
  std::shared_ptr<const Config> config = loadConfigText(yaml, "test.yaml", diags);
  if (config == nullptr) {
    return nullptr;
  }
  return parsePolicyConfig(*config, diags);
}

std::shared_ptr<const PolicyConfig> parseOk(const std::string& yaml) {
  Diagnostics diags;
  auto config = parse(yaml, &diags);
  EXPECT_NE(config, nullptr) << diags.formatAll();
  return config;
}

const char* kConfig = R"(
policy:
  store: memory
  on_store_error: closed
  exempt:
    clients: [192.0.2.0/24]
    senders: ["monitoring@corp.com", "@trusted.example"]
    sasl_users: [batch]
  limits:
    - name: per-client
      key: [client_address]
      count: messages
      max: 3
      per: 1m
      reply: "450 4.7.1 Too many messages from $client_address, slow down"
    - name: per-sender-rcpts
      key: sender
      count: recipients
      windows:
        - {max: 10, per: 1m}
        - {max: 100, per: 1h}
    - name: per-domain-bytes
      key: [sender_domain]
      count: bytes
      max: 1000000
      per: 1h
      warn_only: true
  relay:
    - sender: nagios@corp.local
      filter: "smtp:[127.0.0.1]:2526"
    - sender: "/^zabbix@/"
      client: [10.0.0.0/8]
      filter: "smtp:[alerts.corp.local]:25"
    - sender: "@reports.corp.local"
      recipient_domain: [partner.com]
      filter: "relay:[partner-gw]:25"
)";

PolicyRequest req(const std::string& state, const std::string& sender, const std::string& client,
                  const std::string& recipient = "x@example.org",
                  const std::string& rcptCount = "0", const std::string& size = "0") {
  PolicyRequest r;
  r.add("request", "smtpd_access_policy");
  r.add("protocol_state", state);
  r.add("sender", sender);
  r.add("recipient", recipient);
  r.add("client_address", client);
  r.add("recipient_count", rcptCount);
  r.add("size", size);
  r.add("instance", "abc.1");
  return r;
}

TEST(PolicyConfig, ParsesTheFullExample) {
  auto c = parseOk(kConfig);
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->failOpen);
  ASSERT_EQ(c->limits.size(), 3u);
  EXPECT_EQ(c->limits[1].windows.size(), 2u);
  EXPECT_EQ(c->limits[1].windows[1].periodUs, 3600LL * 1000000);
  EXPECT_TRUE(c->limits[2].warnOnly);
  EXPECT_EQ(c->relay.size(), 3u);
}

TEST(PolicyConfig, InterfaceExampleStillParses) {
  auto c = parseOk(R"(
policy:
  listen: inet:127.0.0.1:10043
  store: memory
  on_store_error: open
  exempt:
    clients: [127.0.0.0/8]
    senders: ["monitoring@corp.com"]
  limits:
    - name: per-client
      key: [client_address]
      count: messages
      max: 100
      per: 1m
      reply: "450 4.7.1 Too many messages from $client_address, slow down"
  relay:
    - sender: nagios@corp.local
      filter: "smtp:[smtp-alerts.corp.local]:25"
redis:
  address: 127.0.0.1:6379
  database: 0
  timeout_ms: 50
  key_prefix: "relaykit:"
)");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->redis.port, 6379);
}

TEST(PolicyConfig, ReportsEveryProblemWithLineAndColumn) {
  Diagnostics diags;
  auto c = parse(R"(
policy:
  store: etcd
  limits:
    - name: a
      key: [client_address/64]
      count: mails
      max: 0
      per: 1fortnight
      reply: "hello"
    - name: a
      key: [sender]
      windows: [{max: 1, per: 1m}, {max: 2, per: 60s}]
  relay:
    - sender: "/([/"
      filter: nowhere
  bogus: 1
)",
                 &diags);
  EXPECT_EQ(c, nullptr);
  const std::string all = diags.formatAll();
  for (const char* want :
       {"test.yaml:3:10: store: expected memory or redis",
        "test.yaml:6:12: limit \"a\": key: bad IPv4 prefix",
        "test.yaml:7:14: limit \"a\": count:", "test.yaml:8:12: value 0 out of range",
        "test.yaml:9:12: invalid duration", "test.yaml:10:14: limit \"a\": reply must start",
        "test.yaml:11:13: duplicate limit name", "test.yaml:13:50: limit \"a\" window: two windows",
        "test.yaml:15:15: relay sender: bad regexp", "test.yaml:16:15: relay rule needs filter",
        "test.yaml:17:3: unknown key \"bogus\" in policy"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  }
  EXPECT_EQ(diags.all().size(), 11u) << all;
}

TEST(PolicyConfig, AdminSocketIsAnAbsoluteBoundedPath) {
  auto c = parseOk("policy:\n  admin_socket: /run/relaykit-policyd.sock\n");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->adminSocket, "/run/relaykit-policyd.sock");
  EXPECT_EQ(parseOk("policy:\n  store: memory\n")->adminSocket, "");
  for (const std::string& bad : {std::string("relative.sock"), std::string("\"\""),
                                 "/" + std::string(kMaxAdminSocketPath, 'x')}) {
    Diagnostics diags;
    EXPECT_EQ(parse("policy:\n  admin_socket: " + bad + "\n", &diags), nullptr) << bad;
    EXPECT_NE(diags.formatAll().find("test.yaml:2:17: admin_socket: expected an absolute path"),
              std::string::npos)
        << diags.formatAll();
  }
}

TEST(PolicyEngine, RcptChecksWithoutChargingEomCharges) {
  auto c = parseOk(kConfig);
  Plan rcpt = planRequest(*c, req("RCPT", "a@corp.com", "10.1.1.1", "x@y.org", "0", "5000"));
  EXPECT_FALSE(rcpt.store.commit);
  ASSERT_EQ(rcpt.store.charges.size(), 3u);
  EXPECT_EQ(rcpt.store.charges[0].cost, 1);     // messages
  EXPECT_EQ(rcpt.store.charges[1].cost, 1);     // recipients: this one
  EXPECT_EQ(rcpt.store.charges[2].cost, 5000);  // SIZE= bytes
  EXPECT_FALSE(rcpt.store.charges[2].enforce);  // warn_only
  Plan eom = planRequest(*c, req("END-OF-MESSAGE", "a@corp.com", "10.1.1.1", "", "4", "7000"));
  EXPECT_TRUE(eom.store.commit);
  ASSERT_EQ(eom.store.charges.size(), 3u);
  EXPECT_EQ(eom.store.charges[1].cost, 4);
  EXPECT_EQ(eom.store.charges[2].cost, 7000);
  EXPECT_EQ(planRequest(*c, req("MAIL", "a@corp.com", "10.1.1.1")).store.charges.size(), 0u);
}

// allowances: the principal an entry matches gets its own windows (address folding applies to
// the match as to requests), everyone else the limit's default.
TEST(PolicyEngine, PerPrincipalAllowances) {
  auto c = parseOk(R"(
policy:
  limits:
    - name: s
      key: [sender]
      max: 100
      per: 1d
      allowances:
        - match: {sender: Monitor@Corp.local}
          max: 10000
          per: 1d
        - match: {sender: app@corp.local}
          windows: [{max: 5, per: 1m}, {max: 100, per: 1h}]
    - name: n
      key: [client_address/24, sender_domain]
      max: 7
      per: 1m
      allowances:
        - match: {client_address/24: 10.1.2.0, sender_domain: corp.local}
          max: 70
          per: 1m
)");
  auto windowsOf = [&](const std::string& sender, const std::string& client, std::size_t i) {
    Plan p = planRequest(*c, req("END-OF-MESSAGE", sender, client));
    EXPECT_EQ(p.store.charges.size(), 2u);
    return p.store.charges.size() > i ? p.store.charges[i].windows : std::vector<RateWindow>{};
  };
  EXPECT_EQ(windowsOf("monitor+disk@corp.local", "10.0.0.1", 0),
            (std::vector<RateWindow>{{10000, 86400000000}}));
  EXPECT_EQ(windowsOf("app@corp.local", "10.0.0.1", 0),
            (std::vector<RateWindow>{{5, 60000000}, {100, 3600000000}}));
  EXPECT_EQ(windowsOf("other@corp.local", "10.0.0.1", 0),
            (std::vector<RateWindow>{{100, 86400000000}}));
  EXPECT_EQ(windowsOf("x@corp.local", "10.1.2.200", 1), (std::vector<RateWindow>{{70, 60000000}}));
  EXPECT_EQ(windowsOf("x@corp.local", "10.1.3.1", 1), (std::vector<RateWindow>{{7, 60000000}}));
  EXPECT_EQ(windowsOf("x@other.org", "10.1.2.200", 1), (std::vector<RateWindow>{{7, 60000000}}));
}

TEST(PolicyConfig, AllowanceErrors) {
  Diagnostics diags;
  EXPECT_EQ(parse(R"(
policy:
  limits:
    - name: s
      key: [sender]
      max: 100
      per: 1d
      allowances:
        - match: {client_address: 10.0.0.1}
          max: 1
          per: 1d
        - match: {sender: a@b.c}
        - match: {sender: a@b.c}
          max: 1
          per: 1d
        - match: {sender: A@b.c}
          max: 2
          per: 1d
)",
                  &diags),
            nullptr);
  const std::string all = diags.formatAll();
  for (const char* want : {"test.yaml:9:19: limit \"s\" allowance: match: \"client_address\" is "
                           "not a part of the key",
                           "limit \"s\" allowance: needs max and per, or windows",
                           "limit \"s\" allowance: a second allowance for the same principal"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  }
}

TEST(PolicyEngine, Exemptions) {
  auto c = parseOk(kConfig);
  EXPECT_TRUE(planRequest(*c, req("RCPT", "a@corp.com", "192.0.2.9")).exempt);
  EXPECT_TRUE(planRequest(*c, req("RCPT", "Monitoring@Corp.com", "10.0.0.1")).exempt);
  EXPECT_TRUE(planRequest(*c, req("RCPT", "x@trusted.example", "10.0.0.1")).exempt);
  PolicyRequest sasl = req("RCPT", "a@corp.com", "10.0.0.1");
  sasl.add("sasl_username", "Batch");
  EXPECT_TRUE(planRequest(*c, sasl).exempt);
  EXPECT_FALSE(planRequest(*c, req("RCPT", "a@corp.com", "10.0.0.1")).exempt);
}

TEST(PolicyEngine, FilterDecisions) {
  auto c = parseOk(kConfig);
  EXPECT_EQ(planRequest(*c, req("RCPT", "Nagios@corp.local", "10.0.0.1")).filter,
            "FILTER smtp:[127.0.0.1]:2526");
  EXPECT_EQ(planRequest(*c, req("END-OF-MESSAGE", "nagios@corp.local", "10.0.0.1", "")).filter,
            "FILTER smtp:[127.0.0.1]:2526");
  EXPECT_EQ(planRequest(*c, req("RCPT", "zabbix@x.y", "10.0.0.1")).filter,
            "FILTER smtp:[alerts.corp.local]:25");
  EXPECT_EQ(planRequest(*c, req("RCPT", "zabbix@x.y", "172.16.0.1")).filter, "");  // client cond.
  EXPECT_EQ(planRequest(*c, req("RCPT", "r@reports.corp.local", "1.2.3.4", "a@partner.com")).filter,
            "FILTER relay:[partner-gw]:25");
  EXPECT_EQ(planRequest(*c, req("RCPT", "r@reports.corp.local", "1.2.3.4", "a@other.com")).filter,
            "");
  // At END-OF-MESSAGE without `recipient`, the recipients accepted at RCPT decide.
  std::vector<std::string> accepted{"a@other.com", "b@partner.com"};
  EXPECT_EQ(planRequest(*c, req("END-OF-MESSAGE", "r@reports.corp.local", "1.2.3.4", ""), &accepted)
                .filter,
            "FILTER relay:[partner-gw]:25");
  EXPECT_EQ(planRequest(*c, req("MAIL", "nagios@corp.local", "10.0.0.1")).filter, "");
  // Exempt clients still get their FILTER.
  EXPECT_EQ(planRequest(*c, req("RCPT", "nagios@corp.local", "192.0.2.1")).filter,
            "FILTER smtp:[127.0.0.1]:2526");
}

TEST(PolicyEngine, SendersMatchLikeSenderDependentRelayhostMaps) {
  // Address and @domain rules and exemptions find what Postfix's own
  // sender_dependent_relayhost_maps or check_sender_access table would: the extension stripped
  // (recipient_delimiter), any case, a bare localpart for the local domains, "<>" for the null
  // sender.
  auto c = parseOk(std::string(R"(
postfix:
  local_domains: [relay.corp.local]
  recipient_delimiter: "+-"
)") + kConfig + R"(
    - sender: cron@relay.corp.local
      filter: "smtp:[cron-gw]:25"
    - sender: "<>"
      filter: "smtp:[bounces-gw]:25"
)");
  EXPECT_EQ(planRequest(*c, req("RCPT", "Nagios+disk@Corp.Local", "10.0.0.1")).filter,
            "FILTER smtp:[127.0.0.1]:2526");
  EXPECT_EQ(planRequest(*c, req("RCPT", "nagios-load@corp.local", "10.0.0.1")).filter,
            "FILTER smtp:[127.0.0.1]:2526");
  EXPECT_EQ(planRequest(*c, req("RCPT", "nagiosx@corp.local", "10.0.0.1")).filter, "");
  EXPECT_EQ(planRequest(*c, req("RCPT", "nagios@corp.local.example", "10.0.0.1")).filter, "");
  EXPECT_EQ(
      planRequest(*c, req("RCPT", "r+x@Reports.Corp.Local", "1.2.3.4", "a@partner.com")).filter,
      "FILTER relay:[partner-gw]:25");
  EXPECT_EQ(
      planRequest(*c, req("RCPT", "r@sub.reports.corp.local", "1.2.3.4", "a@partner.com")).filter,
      "");  // @domain is that domain only, as in Postfix's tables
  EXPECT_EQ(planRequest(*c, req("RCPT", "CRON+daily@relay.corp.local", "10.0.0.1")).filter,
            "FILTER smtp:[cron-gw]:25");
  EXPECT_EQ(planRequest(*c, req("RCPT", "", "10.0.0.1")).filter, "FILTER smtp:[bounces-gw]:25");
  EXPECT_TRUE(planRequest(*c, req("RCPT", "monitoring+x@corp.com", "10.0.0.1")).exempt);
  EXPECT_TRUE(planRequest(*c, req("RCPT", "x-y@Trusted.Example", "10.0.0.1")).exempt);
  EXPECT_FALSE(planRequest(*c, req("RCPT", "monitoringx@corp.com", "10.0.0.1")).exempt);
  EXPECT_TRUE(c->matchesSenderKeys);
  EXPECT_FALSE(parseOk("policy:\n  relay:\n    - {sender: \"/^a@/\", filter: \"smtp:[x]:25\"}\n")
                   ->matchesSenderKeys);
}

TEST(PolicyEngine, DecideRefusesWithExpandedReplyAndWarnsOnly) {
  auto c = parseOk(kConfig);
  const PolicyRequest r = req("END-OF-MESSAGE", "a@corp.com", "10.9.9.9", "", "1", "100");
  Plan plan = planRequest(*c, r);
  StoreResult result;
  result.outcomes = {{false, 2500000}, {true, 0}, {false, 10}};
  Verdict v = decide(*c, r, plan, result);
  EXPECT_TRUE(v.refused);
  EXPECT_EQ(v.action, "450 4.7.1 Too many messages from 10.9.9.9, slow down (retry in 3 s)");
  ASSERT_EQ(v.logs.size(), 2u);
  EXPECT_EQ(v.logs[1].rfind("warn_only: would refuse", 0), 0u);
  // Only the warn-only limit over: allowed.
  result.outcomes = {{true, 0}, {true, 0}, {false, 10}};
  v = decide(*c, r, plan, result);
  EXPECT_FALSE(v.refused);
  EXPECT_EQ(v.action, "DUNNO");
  EXPECT_EQ(v.logs.size(), 1u);
}

TEST(PolicyEngine, DefaultReplyHasRetryHint) {
  EXPECT_EQ(expandReply(kDefaultLimitReply, PolicyRequest(), "per-x", 42),
            "450 4.7.1 Too much mail (per-x), please retry in 42 seconds");
  PolicyRequest r;
  r.add("sender", "evil\n@x");
  EXPECT_EQ(expandReply("450 4.7.1 ${sender} $$5 $nope.", r, "l", 1),
            "450 4.7.1 evil @x $5 . (retry in 1 s)");
}

TEST(PolicyEngine, StoreErrorModes) {
  auto closed = parseOk(kConfig);
  Plan plan = planRequest(*closed, req("RCPT", "a@corp.com", "10.0.0.1"));
  Verdict v = decideOnStoreError(*closed, plan, Status::error("redis timeout"));
  EXPECT_TRUE(v.refused);
  EXPECT_EQ(v.action.rfind("DEFER_IF_PERMIT", 0), 0u);
  auto open = parseOk(std::string(kConfig).replace(std::string(kConfig).find("closed"), 6, "open"));
  Plan nagios = planRequest(*open, req("RCPT", "nagios@corp.local", "10.0.0.1"));
  v = decideOnStoreError(*open, nagios, Status::error("redis timeout"));
  EXPECT_FALSE(v.refused);
  EXPECT_EQ(v.action, "FILTER smtp:[127.0.0.1]:2526");
}

TEST(PolicyEngine, RecipientDomainLimitsUseAcceptedRecipientsAtEom) {
  auto c = parseOk(R"(
policy:
  limits:
    - name: per-rcpt-domain
      key: [recipient_domain]
      count: recipients
      max: 5
      per: 1m
)");
  std::vector<std::string> accepted{"a@x.com", "b@X.com", "c@y.com"};
  Plan plan = planRequest(*c, req("END-OF-MESSAGE", "s@corp.com", "10.0.0.1", "", "3"), &accepted);
  ASSERT_EQ(plan.store.charges.size(), 2u);
  EXPECT_EQ(plan.store.charges[0].cost + plan.store.charges[1].cost, 3);
  EXPECT_NE(plan.store.charges[0].key, plan.store.charges[1].key);
}

}  // namespace
}  // namespace relaykit::policy

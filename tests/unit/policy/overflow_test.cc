// SPDX-License-Identifier: Apache-2.0
// overflow_test.cc: the rate-limit arithmetic and the engine under extreme values: a cost far
// above max (the fuzz finding: count: bytes, size=99999999999999, max 1000 per 1h), TATs near
// INT64_MAX (a hostile store), oversize numeric attributes, window bounds in the config.
#include <gtest/gtest.h>

#include <limits>

#include "policyd/gcra.h"
#include "policyd/memory_store.h"
#include "policyd/policy_engine.h"

namespace relaykit::policy {
namespace {

constexpr std::int64_t kSecond = 1000000;
constexpr std::int64_t kHour = 3600 * kSecond;
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

TEST(GcraOverflow, CostFarAboveMaxIsRefusedWithoutComputingAnIncrement) {
  const RateWindow w{1000, kHour};
  const std::int64_t now = 1700000000 * kSecond;
  // cost * period / max = 3.6e20: beyond int64. The refusal comes first and stores nothing new.
  GcraOutcome o = gcraCheck(0, now, 99999999999999, w);
  EXPECT_FALSE(o.allowed);
  EXPECT_EQ(o.retryAfterUs, kHour);
  EXPECT_EQ(o.newTatUs, now);
  o = gcraCheck(now + 5, now, kInt64Max, w);
  EXPECT_FALSE(o.allowed);
  EXPECT_EQ(o.newTatUs, now + 5);
}

TEST(GcraOverflow, IncrementSaturates) {
  EXPECT_EQ(gcraIncrement(kInt64Max, RateWindow{1, 366 * 24 * kHour}), kInt64Max);
  EXPECT_EQ(gcraIncrement(-5, RateWindow{10, kHour}), 0);
  EXPECT_EQ(gcraIncrement(5, RateWindow{0, kHour}), 0);
  EXPECT_EQ(gcraIncrement(5, RateWindow{10, kHour}), kHour / 2);
}

TEST(GcraOverflow, TatNearInt64MaxSaturatesAndIsRefused) {
  const RateWindow w{10, kHour};
  const std::int64_t now = 1700000000 * kSecond;
  GcraOutcome o = gcraCheck(kInt64Max - 5, now, 10, w);  // a stored TAT a hostile writer chose
  EXPECT_FALSE(o.allowed);
  EXPECT_EQ(o.newTatUs, kInt64Max);
  EXPECT_GT(o.retryAfterUs, 0);
  EXPECT_EQ(gcraRescale(kInt64Max, now, kInt64Max, 1), kInt64Max);
  EXPECT_EQ(gcraRemaining(kInt64Max, now, w), 0);
  EXPECT_EQ(gcraRemaining(0, now, w), 10);
  // A clock before the epoch (never in practice) still gives a sane answer.
  const std::int64_t minimum = std::numeric_limits<std::int64_t>::min();
  o = gcraCheck(minimum, minimum, 1, w);
  EXPECT_TRUE(o.allowed);
  EXPECT_FALSE(gcraCheck(0, minimum, 1, w).allowed);  // a TAT far ahead of that clock
}

std::shared_ptr<const PolicyConfig> parse(const std::string& yaml, Diagnostics* diags) {
  std::shared_ptr<const Config> config = loadConfigText(yaml, "test.yaml", diags);
  return config == nullptr ? nullptr : parsePolicyConfig(*config, diags);
}

const char* kBytesConfig = R"(
policy:
  limits:
    - name: bytes
      key: [sender]
      count: bytes
      max: 1000
      per: 1h
      warn_only: true
)";

PolicyRequest eom(const std::string& size, const std::string& count = "1") {
  PolicyRequest r;
  r.add("request", "smtpd_access_policy");
  r.add("protocol_state", "END-OF-MESSAGE");
  r.add("sender", "a@example.com");
  r.add("recipient_count", count);
  r.add("size", size);
  return r;
}

TEST(EngineOverflow, HugeSizeAgainstWarnOnlyBytesLimitStoresNothing) {
  Diagnostics diags;
  auto config = parse(kBytesConfig, &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  const std::int64_t now = 1700000000 * kSecond;
  MemoryStore store([now] { return now; });
  const PolicyRequest request = eom("99999999999999");
  ASSERT_TRUE(checkRequest(request).isOk());
  Plan plan = planRequest(*config, request);
  ASSERT_EQ(plan.store.charges.size(), 1u);
  EXPECT_EQ(plan.store.charges[0].cost, 99999999999999);
  StatusOr<StoreResult> result = store.evaluateNow(plan.store);
  ASSERT_TRUE(result.isOk());
  EXPECT_TRUE(result->committed);  // warn_only: the message passes
  EXPECT_FALSE(result->outcomes[0].allowed);
  EXPECT_EQ(store.size(), 0u);  // and nothing was charged
  Verdict v = decide(*config, request, plan, *result);
  EXPECT_FALSE(v.refused);
  ASSERT_EQ(v.hits.size(), 1u);
}

TEST(EngineOverflow, NumericAttributesAreCheckedAndBounded) {
  EXPECT_TRUE(checkRequest(eom("")).isOk());
  EXPECT_TRUE(checkRequest(eom("0")).isOk());
  EXPECT_TRUE(checkRequest(eom(std::to_string(kMaxSizeAttribute))).isOk());
  for (const std::string& bad :
       {std::to_string(kMaxSizeAttribute + 1), std::string("-1"), std::string("12x"),
        std::string("1e9"), std::string(" 5"), std::string("99999999999999999999999"),
        std::string("+5"), std::string(30, '0'), std::string("1\0002", 3)}) {
    Status s = checkRequest(eom(bad));
    EXPECT_FALSE(s.isOk()) << bad;
    for (char c : s.message()) {
      EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "unprintable byte in " << s.message();
    }
  }
  EXPECT_FALSE(checkRequest(eom("10", "10000001")).isOk());
  EXPECT_TRUE(checkRequest(eom("10", "10000000")).isOk());
  // An unchecked request: an oversize number counts as the bound (stricter), garbage as 0.
  Diagnostics diags;
  auto config = parse(kBytesConfig, &diags);
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(planRequest(*config, eom("99999999999999999999999")).store.charges.at(0).cost,
            kMaxSizeAttribute);
  EXPECT_TRUE(planRequest(*config, eom("junk")).store.charges.empty());
}

TEST(EngineOverflow, WindowBoundsInTheConfig) {
  Diagnostics diags;
  EXPECT_EQ(parse("policy:\n  limits:\n    - {name: a, key: [sender], max: 10000000000000000, "
                  "per: 1h}\n",
                  &diags),
            nullptr);
  EXPECT_NE(diags.formatAll().find("out of range"), std::string::npos) << diags.formatAll();
  Diagnostics diags2;
  EXPECT_EQ(
      parse("policy:\n  limits:\n    - {name: a, key: [sender], max: 10, per: 367d}\n", &diags2),
      nullptr);
  EXPECT_NE(diags2.formatAll().find("at most 366d"), std::string::npos) << diags2.formatAll();
  Diagnostics diags3;
  EXPECT_NE(parse("policy:\n  limits:\n    - {name: a, key: [sender], max: 1000000000000000, "
                  "per: 366d}\n",
                  &diags3),
            nullptr)
      << diags3.formatAll();
}

}  // namespace
}  // namespace relaykit::policy

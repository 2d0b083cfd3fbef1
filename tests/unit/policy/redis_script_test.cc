// SPDX-License-Identifier: Apache-2.0
// redis_script_test.cc: the encoding of the rate-limit script's arguments (appendRateScriptArgs)
// and the TTL every written key gets (rateKeyTtlMs), without a server: the layout
// policyd/redis_script.h documents, the increments of gcraIncrement, and a TTL that outlives
// every TAT an allowed charge can leave. The script itself is tested against a real redis-server
// in store_conformance_test.cc.
#include "policyd/redis_script.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace relaykit::policy {
namespace {

constexpr std::int64_t kSecond = 1000000;
constexpr std::int64_t kMinute = 60 * kSecond;

std::vector<double> decodeNumbers(const std::string& format, const std::string& packed) {
  EXPECT_EQ(format.substr(0, 1), "<");
  EXPECT_EQ(format.find_first_not_of('d', 1), std::string::npos) << format;
  EXPECT_EQ(packed.size(), 8 * (format.size() - 1));
  std::vector<double> out;
  for (std::size_t i = 0; i + 8 <= packed.size(); i += 8) {
    std::uint64_t bits = 0;
    for (int b = 7; b >= 0; --b) {
      bits = (bits << 8) | static_cast<unsigned char>(packed[i + b]);
    }
    double value = 0;
    std::memcpy(&value, &bits, sizeof(value));
    out.push_back(value);
  }
  return out;
}

TEST(RedisScriptArgs, LayoutOfKeysNumbersAndFields) {
  StoreRequest request;
  request.commit = true;
  request.charges.push_back(StoreCharge{"rl:{a}:c", {{100, kMinute}}, 1, true});
  request.charges.push_back(
      StoreCharge{"rl:{b}:s", {{10, kMinute}, {1000, 60 * kMinute}}, 3, false});
  request.charges.push_back(StoreCharge{"rl:{c}:b", {{1000, kMinute}}, 5000, true});
  std::vector<std::string> args;
  appendRateScriptArgs(request, "p:", 0, &args);
  ASSERT_EQ(args.size(), 1u + 3 + 3 + 3 + 4 + 4);
  EXPECT_EQ(args[0], "3");
  EXPECT_EQ(args[1], "p:rl:{a}:c");
  EXPECT_EQ(args[2], "p:rl:{b}:s");
  EXPECT_EQ(args[3], "p:rl:{c}:b");
  EXPECT_EQ(args[4], "0");  // Redis's clock
  const std::vector<double> n = decodeNumbers(args[5], args[6]);
  const std::vector<double> want = {1,                                     // commit
                                    1, 1, 60e6, 600000,                    // enforced, 1 window
                                    0, 2, 60e6, 18e6,   3600e6, 10800000,  // warn-only, 2 windows
                                    1, 1, 60e6, -1};                       // cost > max
  EXPECT_EQ(n, want);
  const std::vector<std::string> strings(args.begin() + 7, args.end());
  EXPECT_EQ(strings,
            (std::vector<std::string>{"61000", "60000000", "100", "3601000", "60000000",
                                      "3600000000", "10", "1000", "61000", "60000000", "1000"}));
}

TEST(RedisScriptArgs, CheckOnlyAndInjectedClock) {
  StoreRequest request;
  request.charges.push_back(StoreCharge{"k", {{7, 10 * kSecond}}, 0, true});
  std::vector<std::string> args;
  appendRateScriptArgs(request, "", 1700000000123456, &args);
  ASSERT_EQ(args.size(), 8u);
  EXPECT_EQ(args[2], "1700000000123456");
  EXPECT_EQ(decodeNumbers(args[3], args[4]), (std::vector<double>{0, 1, 1, 10e6, 0}));
  EXPECT_EQ(args[7], "7");
}

// Every increment is gcraIncrement's (the memory store's own arithmetic), exactly.
TEST(RedisScriptArgs, IncrementsAreGcraIncrement) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 2000; ++i) {
    const RateWindow w{1 + static_cast<std::int64_t>(rng() % 1000000000000000),
                       1000 * (1 + static_cast<std::int64_t>(rng() % (366LL * 86400 * 1000)))};
    const std::int64_t cost = static_cast<std::int64_t>(rng() % (2 * w.max + 1));
    StoreRequest request;
    request.charges.push_back(StoreCharge{"k", {w}, cost, true});
    std::vector<std::string> args;
    appendRateScriptArgs(request, "", 0, &args);
    const std::vector<double> n = decodeNumbers(args[3], args[4]);
    ASSERT_EQ(n.size(), 5u);
    ASSERT_EQ(args.size(), 8u);
    EXPECT_EQ(args[6], std::to_string(w.periodUs));
    EXPECT_EQ(args[7], std::to_string(w.max));
    EXPECT_EQ(n[3], static_cast<double>(w.periodUs));
    if (cost > w.max) {
      EXPECT_EQ(n[4], -1);
    } else {
      EXPECT_EQ(n[4], static_cast<double>(gcraIncrement(cost, w))) << cost << " " << w.max;
    }
  }
}

// No key can expire while one of its TATs is in the future: an allowed charge leaves every
// window's TAT at most one period ahead, and the key's TTL is its longest period + 1 s.
TEST(RedisScriptArgs, TtlOutlivesEveryTatAnAllowedChargeLeaves) {
  std::mt19937_64 rng(5);
  const std::int64_t now = 1700000000LL * kSecond;
  for (int i = 0; i < 20000; ++i) {
    std::vector<RateWindow> windows;
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n; ++k) {
      windows.push_back({1 + static_cast<std::int64_t>(rng() % 100000),
                         1 + static_cast<std::int64_t>(rng() % (400LL * 86400 * kSecond))});
    }
    const std::int64_t ttlUs = rateKeyTtlMs(windows) * 1000;
    for (const RateWindow& w : windows) {
      const std::int64_t tat = now + static_cast<std::int64_t>(rng() % (2 * w.periodUs));
      const std::int64_t cost = static_cast<std::int64_t>(rng() % (w.max + 1));
      const GcraOutcome g = gcraCheck(tat, now, cost, w);
      if (g.allowed) {
        EXPECT_GE(ttlUs - kSecond, g.newTatUs - now);
      }
    }
  }
  EXPECT_EQ(rateKeyTtlMs({{1, kMinute}, {1, 1}}), 61000);
  EXPECT_EQ(rateKeyTtlMs({{1, 1500}}), 1002);  // rounded up
}

}  // namespace
}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// gcra_test.cc: rate-limit arithmetic with an injected clock: bursts at window edges, several
// windows, all-or-nothing, refused mail not counted, warn-only.
#include <gtest/gtest.h>

#include "policyd/gcra.h"
#include "policyd/memory_store.h"

namespace relaykit::policy {
namespace {

constexpr std::int64_t kSecond = 1000000;
constexpr std::int64_t kMinute = 60 * kSecond;

TEST(Gcra, BurstOfMaxThenRefused) {
  const RateWindow w{10, kMinute};
  std::int64_t tat = 0;
  const std::int64_t now = 1000 * kSecond;
  for (int i = 0; i < 10; ++i) {
    GcraOutcome o = gcraCheck(tat, now, 1, w);
    ASSERT_TRUE(o.allowed) << i;
    tat = o.newTatUs;
  }
  GcraOutcome o = gcraCheck(tat, now, 1, w);
  EXPECT_FALSE(o.allowed);
  EXPECT_EQ(o.retryAfterUs, 6 * kSecond);  // one emission interval
  EXPECT_EQ(gcraRemaining(tat, now, w), 0);
  EXPECT_EQ(gcraRemaining(tat, now + kMinute, w), 10);
}

TEST(Gcra, CostZeroAlwaysFitsCostAboveMaxNever) {
  const RateWindow w{10, kMinute};
  EXPECT_TRUE(gcraCheck(0, 5, 0, w).allowed);
  GcraOutcome o = gcraCheck(0, 5, 11, w);
  EXPECT_FALSE(o.allowed);
  EXPECT_EQ(o.retryAfterUs, kMinute);
}

// A fixed window passes 2x max across its edge; GCRA never passes more than max in any burst,
// and never more than max + elapsed/interval over a longer span.
TEST(Gcra, NoDoubleBurstAtWindowEdge) {
  const RateWindow w{100, kMinute};
  std::int64_t tat = 0;
  std::int64_t now = 10 * kMinute - kSecond;  // 1 s before a "minute boundary"
  int passed = 0;
  for (int i = 0; i < 300; ++i) {
    GcraOutcome o = gcraCheck(tat, now, 1, w);
    if (o.allowed) {
      tat = o.newTatUs;
      ++passed;
    }
  }
  now += 2 * kSecond;  // 1 s after the boundary
  for (int i = 0; i < 300; ++i) {
    GcraOutcome o = gcraCheck(tat, now, 1, w);
    if (o.allowed) {
      tat = o.newTatUs;
      ++passed;
    }
  }
  // 100 burst + 2 s worth of refill (0.6 s per message) = 103, far from 200.
  EXPECT_EQ(passed, 103);
}

TEST(Gcra, SteadyRateOverLongSpan) {
  const RateWindow w{60, kMinute};  // 1 per second sustained
  std::int64_t tat = 0;
  int passed = 0;
  for (std::int64_t t = 0; t < 10 * kMinute; t += 100000) {  // 10/s offered
    GcraOutcome o = gcraCheck(tat, 5 * kMinute + t, 1, w);
    if (o.allowed) {
      tat = o.newTatUs;
      ++passed;
    }
  }
  EXPECT_GE(passed, 60 + 600 - 1);
  EXPECT_LE(passed, 60 + 600 + 1);
}

struct Clock {
  std::int64_t now = 1700000000LL * kSecond;
  MicrosClock fn() {
    return [this] { return now; };
  }
};

StoreCharge charge(const std::string& key, std::vector<RateWindow> windows, std::int64_t cost,
                   bool enforce = true) {
  StoreCharge c;
  c.key = key;
  c.windows = std::move(windows);
  c.cost = cost;
  c.enforce = enforce;
  return c;
}

bool commit(MemoryStore& store, std::vector<StoreCharge> charges) {
  StoreRequest r{std::move(charges), true};
  StatusOr<StoreResult> res = store.evaluateNow(r);
  return res.isOk() && res->committed;
}

TEST(MemoryStoreAlgorithm, SeveralWindowsTheTightestWins) {
  Clock clock;
  MemoryStore store(clock.fn());
  const std::vector<RateWindow> windows{{5, kMinute}, {8, 60 * kMinute}};
  int passed = 0;
  for (int minute = 0; minute < 5; ++minute) {
    for (int i = 0; i < 10; ++i) {
      passed += commit(store, {charge("k", windows, 1)}) ? 1 : 0;
    }
    clock.now += kMinute;
  }
  // The minute window lets 5 through at once; the hour window caps the total at 8 (+ refill of
  // 8 per hour over 4 minutes = 0.53, not a whole message).
  EXPECT_EQ(passed, 8);
}

TEST(MemoryStoreAlgorithm, AllOrNothingAcrossLimits) {
  Clock clock;
  MemoryStore store(clock.fn());
  const std::vector<RateWindow> big{{100, kMinute}};
  const std::vector<RateWindow> small{{2, kMinute}};
  EXPECT_TRUE(commit(store, {charge("a", big, 1), charge("b", small, 1)}));
  EXPECT_TRUE(commit(store, {charge("a", big, 1), charge("b", small, 1)}));
  EXPECT_FALSE(commit(store, {charge("a", big, 1), charge("b", small, 1)}));  // b full
  // "a" was not charged by the refused request: 2 used, 98 left.
  EXPECT_EQ(store.show("a", big)[0].remaining, 98);
  EXPECT_EQ(store.show("b", small)[0].remaining, 0);
}

TEST(MemoryStoreAlgorithm, RefusedMailIsNotCounted) {
  Clock clock;
  MemoryStore store(clock.fn());
  const std::vector<RateWindow> w{{3, kMinute}};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(commit(store, {charge("k", w, 1)}));
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_FALSE(commit(store, {charge("k", w, 1)}));  // a hammering client
  }
  // After one emission interval exactly one more fits: the refusals added nothing.
  clock.now += kMinute / 3;
  EXPECT_TRUE(commit(store, {charge("k", w, 1)}));
  EXPECT_FALSE(commit(store, {charge("k", w, 1)}));
}

TEST(MemoryStoreAlgorithm, CheckDoesNotCharge) {
  Clock clock;
  MemoryStore store(clock.fn());
  const std::vector<RateWindow> w{{2, kMinute}};
  StoreRequest check{{charge("k", w, 1)}, false};
  for (int i = 0; i < 10; ++i) {
    StatusOr<StoreResult> r = store.evaluateNow(check);
    ASSERT_TRUE(r.isOk());
    EXPECT_TRUE(r->outcomes[0].allowed);
    EXPECT_FALSE(r->committed);
  }
  EXPECT_EQ(store.show("k", w)[0].remaining, 2);
}

TEST(MemoryStoreAlgorithm, WarnOnlyDoesNotBlockAndIsNotChargedWhenOver) {
  Clock clock;
  MemoryStore store(clock.fn());
  const std::vector<RateWindow> tight{{1, kMinute}};
  const std::vector<RateWindow> loose{{100, kMinute}};
  EXPECT_TRUE(commit(store, {charge("warn", tight, 1, false), charge("real", loose, 1)}));
  StoreRequest r{{charge("warn", tight, 1, false), charge("real", loose, 1)}, true};
  StatusOr<StoreResult> res = store.evaluateNow(r);
  ASSERT_TRUE(res.isOk());
  EXPECT_TRUE(res->committed);
  EXPECT_FALSE(res->outcomes[0].allowed);  // would have refused
  EXPECT_TRUE(res->outcomes[1].allowed);
  EXPECT_EQ(store.show("real", loose)[0].remaining, 98);
}

TEST(MemoryStoreAlgorithm, RecipientCostAndExpiry) {
  Clock clock;
  MemoryStore store(clock.fn());
  const std::vector<RateWindow> w{{10, kMinute}};
  EXPECT_TRUE(commit(store, {charge("k", w, 7)}));
  EXPECT_FALSE(commit(store, {charge("k", w, 4)}));
  EXPECT_TRUE(commit(store, {charge("k", w, 3)}));
  EXPECT_EQ(store.size(), 1u);
  clock.now += 2 * kMinute;
  for (int i = 0; i < 10; ++i) {  // each evaluation sweeps a few hash buckets
    EXPECT_TRUE(commit(store, {charge("other", w, 1)}));
  }
  EXPECT_EQ(store.size(), 1u);  // "k" expired and was swept
}

TEST(MemoryStoreAlgorithm, SweepIsPacedByTheClock) {
  Clock clock;
  MemoryStore store(clock.fn());
  const std::vector<RateWindow> w{{10, kSecond}};
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(commit(store, {charge("k" + std::to_string(i), w, 1)}));
  }
  EXPECT_EQ(store.size(), 2000u);
  clock.now += 10 * kSecond;  // every entry has expired
  // Many requests at one instant examine a bounded number of buckets: most entries stay.
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(commit(store, {charge("same-instant", w, 1)}));
  }
  EXPECT_GT(store.size(), 1000u);
  // Within one second of requests, however few, the whole table has been examined.
  for (int i = 0; i < 110; ++i) {
    clock.now += 10000;  // 10 ms
    EXPECT_TRUE(commit(store, {charge("paced", {{1000, kSecond}}, 1)}));
  }
  EXPECT_LE(store.size(), 2u);  // only "paced" (and "same-instant" unless swept) remain
}

TEST(MemoryStoreAlgorithm, FullStoreIsAnError) {
  Clock clock;
  MemoryStore store(clock.fn(), 2);
  const std::vector<RateWindow> w{{10, kMinute}};
  EXPECT_TRUE(commit(store, {charge("a", w, 1)}));
  EXPECT_TRUE(commit(store, {charge("b", w, 1)}));
  StoreRequest r{{charge("c", w, 1)}, true};
  EXPECT_FALSE(store.evaluateNow(r).isOk());
}

}  // namespace
}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// store_conformance_test.cc: one conformance suite run against both stores (memory, and Redis
// through a real private redis-server), plus Redis-only behaviour: key layout and expiry, Redis's
// own clock, NOSCRIPT reload, timeouts, outage and recovery.
#include <event2/event.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <random>
#include <sstream>

#include "policyd/memory_store.h"
#include "policyd/redis_store.h"
#include "redis_test_server.h"

namespace relaykit::policy {
namespace {

using testing::RedisTestServer;
constexpr std::int64_t kSecond = 1000000;
constexpr std::int64_t kMinute = 60 * kSecond;

// Runs the event loop until `done` or `limitMs` passed.
StatusOr<StoreResult> runOnLoop(event_base* base, RateStore* store, const StoreRequest& request,
                                int limitMs = 2000) {
  std::optional<StatusOr<StoreResult>> result;
  store->evaluate(request, [&result](StatusOr<StoreResult> r) { result = std::move(r); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limitMs);
  while (!result && std::chrono::steady_clock::now() < deadline) {
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  if (!result) {
    return Status::error("test: no answer in time");
  }
  return std::move(*result);
}

class StoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    if (GetParam() == "memory") {
      store_ = std::make_unique<MemoryStore>([this] { return now_; });
      return;
    }
    if (!testing::redisAvailable()) {
      GTEST_SKIP() << "redis-server not installed";
    }
    redis_ = std::make_unique<RedisTestServer>();
    ASSERT_TRUE(redis_->start());
    RedisStoreSettings settings;
    settings.port = redis_->port();
    settings.timeoutMs = 1000;
    settings.keyPrefix = "test:";
    auto store = std::make_unique<RedisStore>(base_, settings, [this] { return now_; });
    store->start();
    store_ = std::move(store);
  }
  void TearDown() override {
    store_.reset();
    redis_.reset();
    event_base_free(base_);
  }

  StoreResult run(std::vector<StoreCharge> charges, bool commit) {
    StatusOr<StoreResult> r =
        runOnLoop(base_, store_.get(), StoreRequest{std::move(charges), commit});
    EXPECT_TRUE(r.isOk()) << r.status().message();
    return r.isOk() ? *r : StoreResult{};
  }
  bool charge(std::vector<StoreCharge> charges) { return run(std::move(charges), true).committed; }

  // Runs `charges` (each key once: duplicates dropped) on the store under test and on
  // `reference`; true when both answer the same.
  ::testing::AssertionResult sameAsReference(MemoryStore& reference,
                                             std::vector<StoreCharge> charges, bool commit) {
    std::sort(charges.begin(), charges.end(), [](auto& a, auto& b) { return a.key < b.key; });
    charges.erase(std::unique(charges.begin(), charges.end(),
                              [](auto& a, auto& b) { return a.key == b.key; }),
                  charges.end());
    StoreResult got = run(charges, commit);
    StatusOr<StoreResult> want = reference.evaluateNow(StoreRequest{charges, commit});
    if (!want.isOk() || got.committed != want->committed ||
        got.outcomes.size() != want->outcomes.size()) {
      return ::testing::AssertionFailure() << "committed or outcome count differ";
    }
    for (std::size_t k = 0; k < got.outcomes.size(); ++k) {
      if (got.outcomes[k].allowed != want->outcomes[k].allowed ||
          got.outcomes[k].retryAfterUs != want->outcomes[k].retryAfterUs) {
        return ::testing::AssertionFailure()
               << "charge " << k << ": allowed " << got.outcomes[k].allowed << " retry "
               << got.outcomes[k].retryAfterUs << ", reference " << want->outcomes[k].allowed
               << " retry " << want->outcomes[k].retryAfterUs;
      }
    }
    return ::testing::AssertionSuccess();
  }
  static StoreCharge c(const std::string& key, std::vector<RateWindow> w, std::int64_t cost,
                       bool enforce = true) {
    return StoreCharge{key, std::move(w), cost, enforce};
  }

  std::int64_t now_ = 1700000000LL * kSecond;
  event_base* base_ = nullptr;
  std::unique_ptr<RedisTestServer> redis_;
  std::unique_ptr<RateStore> store_;
};

TEST_P(StoreConformance, BurstOfMaxThenRefusedWithRetryHint) {
  const std::vector<RateWindow> w{{5, kMinute}};
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(charge({c("rl:{a}:l", w, 1)})) << i;
  }
  StoreResult r = run({c("rl:{a}:l", w, 1)}, true);
  EXPECT_FALSE(r.committed);
  EXPECT_FALSE(r.outcomes[0].allowed);
  EXPECT_EQ(r.outcomes[0].retryAfterUs, 12 * kSecond);
}

TEST_P(StoreConformance, ExactlyAtTheEmissionInterval) {
  const std::vector<RateWindow> w{{5, kMinute}};
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(charge({c("rl:{a}:l", w, 1)}));
  }
  now_ += 12 * kSecond - 1;
  EXPECT_FALSE(charge({c("rl:{a}:l", w, 1)}));
  now_ += 1;
  EXPECT_TRUE(charge({c("rl:{a}:l", w, 1)}));
  EXPECT_FALSE(charge({c("rl:{a}:l", w, 1)}));
}

TEST_P(StoreConformance, CheckDoesNotCharge) {
  const std::vector<RateWindow> w{{2, kMinute}};
  for (int i = 0; i < 5; ++i) {
    StoreResult r = run({c("rl:{a}:l", w, 1)}, false);
    EXPECT_TRUE(r.outcomes[0].allowed);
    EXPECT_FALSE(r.committed);
  }
  EXPECT_TRUE(charge({c("rl:{a}:l", w, 2)}));
  EXPECT_FALSE(run({c("rl:{a}:l", w, 1)}, false).outcomes[0].allowed);
}

TEST_P(StoreConformance, AllOrNothingAcrossPrincipals) {
  const std::vector<RateWindow> big{{100, kMinute}};
  const std::vector<RateWindow> small{{1, kMinute}};
  EXPECT_TRUE(charge({c("rl:{a}:big", big, 1), c("rl:{b}:small", small, 1)}));
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(charge({c("rl:{a}:big", big, 1), c("rl:{b}:small", small, 1)}));
  }
  // 99 left in "big": the ten refused requests charged nothing.
  EXPECT_TRUE(charge({c("rl:{a}:big", big, 99)}));
  EXPECT_FALSE(charge({c("rl:{a}:big", big, 1)}));
}

TEST_P(StoreConformance, SeveralWindows) {
  const std::vector<RateWindow> w{{5, kMinute}, {8, 60 * kMinute}};
  int passed = 0;
  for (int minute = 0; minute < 5; ++minute) {
    for (int i = 0; i < 10; ++i) {
      passed += charge({c("rl:{a}:l", w, 1)}) ? 1 : 0;
    }
    now_ += kMinute;
  }
  EXPECT_EQ(passed, 8);
}

TEST_P(StoreConformance, WarnOnlyNeverBlocksAndIsNotChargedWhenOver) {
  const std::vector<RateWindow> tight{{1, kMinute}};
  const std::vector<RateWindow> loose{{3, kMinute}};
  EXPECT_TRUE(charge({c("rl:{w}:t", tight, 1, false), c("rl:{r}:l", loose, 1)}));
  StoreResult r = run({c("rl:{w}:t", tight, 1, false), c("rl:{r}:l", loose, 1)}, true);
  EXPECT_TRUE(r.committed);
  EXPECT_FALSE(r.outcomes[0].allowed);
  EXPECT_TRUE(r.outcomes[1].allowed);
  now_ += kMinute;  // the warn-only bucket drained: it was not over-charged
  EXPECT_TRUE(run({c("rl:{w}:t", tight, 1, false)}, true).outcomes[0].allowed);
}

// A reload that changes max keeps the units already used (the TAT is rescaled).
TEST_P(StoreConformance, ChangingMaxKeepsUsage) {
  ASSERT_TRUE(charge({c("rl:{a}:l", {{1, 60 * kMinute}}, 1)}));
  EXPECT_FALSE(charge({c("rl:{a}:l", {{1, 60 * kMinute}}, 1)}));
  const std::vector<RateWindow> raised{{3, 60 * kMinute}};
  EXPECT_TRUE(charge({c("rl:{a}:l", raised, 1)}));
  EXPECT_TRUE(charge({c("rl:{a}:l", raised, 1)}));
  EXPECT_FALSE(charge({c("rl:{a}:l", raised, 1)}));
  const std::vector<RateWindow> lowered{{2, 60 * kMinute}};
  EXPECT_FALSE(run({c("rl:{a}:l", lowered, 1)}, false).outcomes[0].allowed);
  // 3 units used at 3 per hour; after 30 min 1.5 are still used, 0.5 free under max 2. 15 min
  // more at 2 per hour frees another 0.5: one message fits, the next does not.
  now_ += 30 * kMinute;
  EXPECT_FALSE(charge({c("rl:{a}:l", lowered, 1)}));
  now_ += 15 * kMinute;
  EXPECT_TRUE(charge({c("rl:{a}:l", lowered, 1)}));
  EXPECT_FALSE(charge({c("rl:{a}:l", lowered, 1)}));
}

TEST_P(StoreConformance, CostAboveMaxNeverFits) {
  StoreResult r = run({c("rl:{a}:l", {{10, kMinute}}, 11)}, true);
  EXPECT_FALSE(r.committed);
  EXPECT_EQ(r.outcomes[0].retryAfterUs, kMinute);
}

// The fuzz finding: a bytes limit (1000 per hour) and a size of 99999999999999, warn-only: the
// message passes, nothing is charged, and the full allowance is still there afterwards.
TEST_P(StoreConformance, HugeWarnOnlyCostIsNotCharged) {
  const std::vector<RateWindow> w{{1000, 3600 * kSecond}};
  StoreResult r =
      run({c("rl:{h}:b", w, 99999999999999, false), c("rl:{o}:m", {{5, kMinute}}, 1)}, true);
  EXPECT_TRUE(r.committed);
  EXPECT_FALSE(r.outcomes[0].allowed);
  EXPECT_EQ(r.outcomes[0].retryAfterUs, 3600 * kSecond);
  EXPECT_TRUE(r.outcomes[1].allowed);
  EXPECT_TRUE(charge({c("rl:{h}:b", w, 1000)}));
  EXPECT_FALSE(charge({c("rl:{h}:b", w, 1)}));
}

TEST_P(StoreConformance, BytesWithFractionalIntervals) {
  const std::vector<RateWindow> w{{1000000, 3600 * kSecond}};  // 1 MB per hour
  EXPECT_TRUE(charge({c("rl:{a}:b", w, 333333)}));
  EXPECT_TRUE(charge({c("rl:{a}:b", w, 333333)}));
  EXPECT_TRUE(charge({c("rl:{a}:b", w, 333334)}));
  EXPECT_FALSE(charge({c("rl:{a}:b", w, 1)}));
}

// A random workload gives the same answers as the reference (memory) implementation.
TEST_P(StoreConformance, AgreesWithReferenceOnRandomWorkload) {
  std::int64_t refNow = now_;
  MemoryStore reference([&refNow] { return refNow; });
  std::mt19937 rng(7);
  const std::vector<std::vector<RateWindow>> shapes{
      {{3, 10 * kSecond}}, {{10, kMinute}, {20, 10 * kMinute}}, {{5000, kMinute}}};
  for (int i = 0; i < 300; ++i) {
    std::vector<StoreCharge> charges;
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n; ++k) {
      const std::size_t shape = rng() % shapes.size();
      charges.push_back(c("rl:{p" + std::to_string(rng() % 4) + "}:s" + std::to_string(shape),
                          shapes[shape], shape == 2 ? rng() % 3000 : 1 + rng() % 3,
                          rng() % 5 != 0));
    }
    ASSERT_TRUE(sameAsReference(reference, std::move(charges), rng() % 4 != 0)) << "step " << i;
    const std::int64_t step = static_cast<std::int64_t>(rng() % 2000) * 1000;
    now_ += step;
    refNow += step;
  }
}

// The same with reloads: maxima that change between requests (TATs rescaled), costs above max
// (never fit), costs of 0, several windows, warn-only charges, and idle gaps longer than periods.
TEST_P(StoreConformance, AgreesWithReferenceAcrossReloadsAndOversizeCosts) {
  std::int64_t refNow = now_;
  MemoryStore reference([&refNow] { return refNow; });
  std::mt19937 rng(13);
  const std::vector<std::vector<RateWindow>> shapes{
      {{4, 10 * kSecond}}, {{10, kMinute}, {30, 10 * kMinute}}, {{6000, kMinute}}};
  for (int i = 0; i < 400; ++i) {
    std::vector<StoreCharge> charges;
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n; ++k) {
      const std::size_t shape = rng() % shapes.size();
      std::vector<RateWindow> windows = shapes[shape];
      if (rng() % 4 == 0) {  // a reload changed max
        for (RateWindow& w : windows) {
          w.max = rng() % 2 == 0 ? w.max * 3 : std::max<std::int64_t>(1, w.max / 2);
        }
      }
      std::int64_t cost = shape == 2 ? static_cast<std::int64_t>(rng() % 4000) : 1 + rng() % 3;
      if (rng() % 10 == 0) {
        cost = rng() % 2 == 0 ? 0 : windows[0].max + 1 + static_cast<std::int64_t>(rng() % 5);
      }
      charges.push_back(c("rl:{q" + std::to_string(rng() % 3) + "}:s" + std::to_string(shape),
                          windows, cost, rng() % 4 != 0));
    }
    ASSERT_TRUE(sameAsReference(reference, std::move(charges), rng() % 5 != 0)) << "step " << i;
    const std::int64_t step =
        rng() % 20 == 0 ? 11 * kMinute : static_cast<std::int64_t>(rng() % 3000) * 1000;
    now_ += step;
    refNow += step;
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreConformance, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

// ---- Redis only -------------------------------------------------------------------------

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::redisAvailable()) {
      GTEST_SKIP() << "redis-server not installed";
    }
    base_ = event_base_new();
    ASSERT_TRUE(server_.start());
  }
  void TearDown() override {
    store_.reset();
    if (base_ != nullptr) {
      event_base_free(base_);
    }
  }
  void makeStore(int timeoutMs, MicrosClock clock = nullptr) {
    RedisStoreSettings s;
    s.port = server_.port();
    s.timeoutMs = timeoutMs;
    store_ = std::make_unique<RedisStore>(base_, s, std::move(clock));
    store_->start();
  }
  StatusOr<StoreResult> run(const std::string& key, std::int64_t cost, bool commit,
                            int limitMs = 3000) {
    StoreRequest r{{StoreCharge{key, {{3, kMinute}}, cost, true}}, commit};
    return runOnLoop(base_, store_.get(), r, limitMs);
  }
  // Pumps the loop for `ms` (lets reconnect timers fire).
  void pump(int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  RedisTestServer server_;
  event_base* base_ = nullptr;
  std::unique_ptr<RedisStore> store_;
};

TEST_F(RedisStoreTest, UsesRedisClockAndExpiringPrefixedKeys) {
  makeStore(1000);
  for (int i = 0; i < 3; ++i) {
    StatusOr<StoreResult> r = run("rl:{abc}:l", 1, true);
    ASSERT_TRUE(r.isOk()) << r.status().message();
    EXPECT_TRUE(r->committed);
  }
  EXPECT_FALSE(run("rl:{abc}:l", 1, true)->committed);
  EXPECT_EQ(server_.command("KEYS *"), "relaykit:rl:{abc}:l");
  const long ttl = std::stol(server_.command("PTTL relaykit:rl:{abc}:l"));
  EXPECT_GT(ttl, 50000);
  EXPECT_LE(ttl, 61000);
  EXPECT_EQ(server_.command("HKEYS relaykit:rl:{abc}:l"), "60000000");
  EXPECT_NE(server_.command("HGET relaykit:rl:{abc}:l 60000000").find(":3"), std::string::npos);
}

// No key can expire while one of its TATs is in the future: after every decision, each key's
// TTL covers the largest TAT it holds (+ at least most of the 1 s margin), and is at most its
// longest period + 1 s, so idle keys still go. The clock is injected; TTLs run on Redis's.
TEST_F(RedisStoreTest, KeysOutliveEveryTatTheyHold) {
  std::int64_t now = 1700000000LL * kSecond;
  makeStore(1000, [&now] { return now; });
  std::mt19937 rng(3);
  const std::vector<std::vector<RateWindow>> shapes{
      {{3, 10 * kSecond}}, {{5, kMinute}, {8, 60 * kMinute}}, {{100, 2 * kSecond}}};
  int written = 0;
  for (int i = 0; i < 300; ++i) {
    std::vector<StoreCharge> charges;
    for (std::size_t s = 0; s < shapes.size(); ++s) {
      if (rng() % 2 == 0) {
        charges.push_back(
            StoreCharge{"rl:{k" + std::to_string(rng() % 3) + "}:s" + std::to_string(s), shapes[s],
                        1 + static_cast<std::int64_t>(rng() % 3), rng() % 3 != 0});
      }
    }
    if (charges.empty()) {
      continue;
    }
    StatusOr<StoreResult> r = runOnLoop(base_, store_.get(), StoreRequest{charges, true});
    ASSERT_TRUE(r.isOk()) << r.status().message();
    for (const StoreCharge& charge : charges) {
      const std::string key = "relaykit:" + charge.key;
      std::istringstream fields(server_.command("HGETALL " + key));
      std::string field;
      std::string value;
      std::int64_t maxTat = 0;
      while (fields >> field >> value) {
        maxTat = std::max<std::int64_t>(maxTat, std::stoll(value.substr(0, value.find(':'))));
      }
      if (maxTat == 0) {
        continue;  // never charged yet
      }
      ++written;
      const std::int64_t pttlMs = std::stoll(server_.command("PTTL " + key));
      ASSERT_GT(pttlMs, 0) << key;
      EXPECT_GE(pttlMs * 1000 + kSecond / 2, maxTat - now + kSecond) << key << " step " << i;
      std::int64_t longest = 0;
      for (const RateWindow& w : charge.windows) {
        longest = std::max(longest, w.periodUs);
      }
      EXPECT_LE(pttlMs * 1000, longest + kSecond) << key;
    }
    now += static_cast<std::int64_t>(rng() % 1500) * 1000;
  }
  EXPECT_GT(written, 100);
}

// A Redis Cluster node is refused at connect with a clear error (one decision may charge several
// principals, i.e. several hash slots, atomically): decisions fail and on_store_error applies.
TEST_F(RedisStoreTest, RefusesClusterNode) {
  // A Cluster node also listens on port + 10000 (the cluster bus): a free port above 55535, or
  // one whose bus port is taken, makes it fail to start; another free port is tried then.
  std::unique_ptr<RedisTestServer> cluster;
  for (int attempt = 0; attempt < 10 && cluster == nullptr; ++attempt) {
    auto candidate = std::make_unique<RedisTestServer>();
    if (candidate->port() <= 55535 && candidate->start(true)) {
      cluster = std::move(candidate);
    }
  }
  ASSERT_NE(cluster, nullptr);
  ASSERT_EQ(cluster->command("CLUSTER ADDSLOTSRANGE 0 16383"), "OK");
  RedisStoreSettings s;
  s.port = cluster->port();
  s.timeoutMs = 1000;
  store_ = std::make_unique<RedisStore>(base_, s);
  store_->start();
  for (int i = 0; i < 50 && store_->stats().clusterRefused == 0; ++i) {
    pump(100);
  }
  EXPECT_GE(store_->stats().clusterRefused, 1u);
  EXPECT_FALSE(store_->stats().connected);
  StatusOr<StoreResult> r = run("rl:{abc}:l", 1, true);
  EXPECT_FALSE(r.isOk());
  // The standalone server of this fixture is accepted.
  makeStore(1000);
  for (int i = 0; i < 50 && !store_->stats().connected; ++i) {
    pump(100);
  }
  EXPECT_TRUE(store_->stats().connected);
  EXPECT_EQ(store_->stats().clusterRefused, 0u);
  EXPECT_TRUE(run("rl:{abc}:l", 1, true)->committed);
}

TEST_F(RedisStoreTest, ReloadsScriptOnNoscript) {
  makeStore(1000);
  ASSERT_TRUE(run("rl:{a}:l", 1, true).isOk());
  server_.command("SCRIPT FLUSH");
  StatusOr<StoreResult> r = run("rl:{a}:l", 1, true);
  ASSERT_TRUE(r.isOk()) << r.status().message();
  EXPECT_TRUE(r->committed);
  EXPECT_GE(store_->stats().noscript, 1u);
}

TEST_F(RedisStoreTest, StuckRedisTimesOutWithinTimeoutThenRecovers) {
  makeStore(50);
  ASSERT_TRUE(run("rl:{a}:l", 1, true).isOk());
  server_.pause();
  const auto t0 = std::chrono::steady_clock::now();
  StatusOr<StoreResult> r = run("rl:{a}:l", 1, true);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_FALSE(r.isOk());
  EXPECT_LT(ms, 50 + 40);
  EXPECT_GE(store_->stats().timeouts, 1u);
  // While the connection is down requests fail at once.
  EXPECT_FALSE(run("rl:{a}:l", 1, false, 100).isOk());
  server_.resume();
  bool recovered = false;
  for (int i = 0; i < 100 && !recovered; ++i) {
    pump(50);
    recovered = run("rl:{a}:l", 1, false).isOk();
  }
  EXPECT_TRUE(recovered);
  EXPECT_GE(store_->stats().connects, 2u);
}

TEST_F(RedisStoreTest, KilledRedisFailsFastAndRecoversWhenBack) {
  makeStore(50);
  ASSERT_TRUE(run("rl:{a}:l", 1, true).isOk());
  server_.stop();
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(run("rl:{a}:l", 1, true).isOk());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(server_.start());
  bool recovered = false;
  for (int i = 0; i < 100 && !recovered; ++i) {
    pump(50);
    recovered = run("rl:{a}:l", 1, true).isOk();
  }
  EXPECT_TRUE(recovered);
  EXPECT_FALSE(store_->stats().connected == false);
}

TEST_F(RedisStoreTest, NeverStartedRedisFailsFast) {
  RedisStoreSettings s;
  s.port = testing::freeLoopbackPort();
  s.timeoutMs = 50;
  store_ = std::make_unique<RedisStore>(base_, s);
  store_->start();
  pump(20);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(runOnLoop(base_, store_.get(),
                         StoreRequest{{StoreCharge{"k", {{1, kSecond}}, 1, true}}, true})
                   .isOk());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
}

}  // namespace
}  // namespace relaykit::policy

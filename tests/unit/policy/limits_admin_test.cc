// SPDX-License-Identifier: Apache-2.0
// limits_admin_test.cc: `relaykit limits` core against a real redis-server: the counters the
// Redis store writes are found from the attributes, shown by Redis's clock, counted and reset.
#include <event2/event.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <chrono>
#include <thread>

#include "common/config.h"
#include "policyd/limits_admin.h"
#include "policyd/policy_engine.h"
#include "policyd/redis_store.h"
#include "redis_test_server.h"

namespace relaykit::policy {
namespace {

std::shared_ptr<const PolicyConfig> configFor(int port) {
  const std::string yaml =
      "policy:\n  store: redis\n  limits:\n"
      "    - name: per-net\n      key: [client_address/24]\n"
      "      windows: [{max: 5, per: 1m}, {max: 50, per: 1h}]\n"
      "    - name: per-sasl\n      key: sasl_username\n      max: 3\n      per: 1m\n"
      "redis:\n  address: 127.0.0.1:" +
      std::to_string(port) + "\n";
  Diagnostics diags;
  auto config = loadConfigText(yaml, "t.yaml", &diags);
  EXPECT_NE(config, nullptr) << diags.formatAll();
  return config ? parsePolicyConfig(*config, &diags) : nullptr;
}

TEST(LimitsAdmin, TargetsFromAttributes) {
  Diagnostics diags;
  auto config = loadConfigText(
      "policy:\n  limits:\n    - name: a\n      key: [client_address/24]\n      max: 1\n      per: "
      "1m\n"
      "    - name: b\n      key: [sasl_username]\n      max: 1\n      per: 1m\n",
      "t.yaml", &diags);
  auto policy = parsePolicyConfig(*config, &diags);
  auto request = requestFromWords({"client_address=192.0.2.9"});
  ASSERT_TRUE(request.isOk());
  auto targets = limitTargets(*policy, *request, "");
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].rule->name, "a");
  EXPECT_EQ(targets[0].principal, "client_address/24=192.0.2.0/24");
  EXPECT_TRUE(limitTargets(*policy, *request, "b").empty());
  EXPECT_FALSE(requestFromWords({"novalue"}).isOk());
}

TEST(LimitsAdmin, ShowCountResetAgainstRedis) {
  if (!testing::redisAvailable()) {
    GTEST_SKIP() << "redis-server not installed";
  }
  testing::RedisTestServer server;
  ASSERT_TRUE(server.start());
  auto config = configFor(server.port());
  ASSERT_NE(config, nullptr);

  // Charge through the real store, as relaykit-policyd would at END-OF-MESSAGE.
  event_base* base = event_base_new();
  {
    RedisStore store(base, config->redis);
    store.start();
    for (const char* client : {"10.0.0.1", "10.0.0.2", "10.0.1.1"}) {
      PolicyRequest r;
      r.add("protocol_state", "END-OF-MESSAGE");
      r.add("client_address", client);
      r.add("sasl_username", "bob");
      Plan plan = planRequest(*config, r);
      bool done = false;
      store.evaluate(plan.store, [&done](StatusOr<StoreResult> res) {
        EXPECT_TRUE(res.isOk());
        done = true;
      });
      for (int i = 0; i < 2000 && !done; ++i) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      ASSERT_TRUE(done);
    }
  }
  event_base_free(base);

  auto admin = RedisAdmin::connect(config->redis);
  ASSERT_TRUE(admin.isOk()) << admin.status().message();
  auto counts = admin->count("");
  ASSERT_TRUE(counts.isOk());
  EXPECT_EQ((*counts)["per-net"], 2);
  EXPECT_EQ((*counts)["per-sasl"], 1);

  auto targets = limitTargets(*config, *requestFromWords({"client_address=10.0.0.99"}), "");
  ASSERT_EQ(targets.size(), 1u);
  auto windows = admin->show(targets[0]);
  ASSERT_TRUE(windows.isOk());
  ASSERT_EQ(windows->size(), 2u);
  EXPECT_EQ((*windows)[0].remaining, 3);
  EXPECT_EQ((*windows)[1].remaining, 48);
  EXPECT_GT((*windows)[0].fullResetUs, 20 * 1000000);

  EXPECT_EQ(*admin->reset(targets[0]), 1);
  EXPECT_EQ(*admin->reset(targets[0]), 0);
  EXPECT_EQ(admin->count("")->at("per-net"), 1);
  EXPECT_EQ(*admin->resetAll("per-sasl"), 1);
  EXPECT_EQ(*admin->resetAll(""), 1);
  EXPECT_TRUE(admin->count("")->empty());
}

// Values in Redis are untrusted: anyone who reaches Redis can write them. A malformed or
// oversize counter is a clear error naming the key, never an exception (std::stoll threw here).
TEST(LimitsAdmin, MalformedCountersInRedisAreClearErrors) {
  if (!testing::redisAvailable()) {
    GTEST_SKIP() << "redis-server not installed";
  }
  testing::RedisTestServer server;
  ASSERT_TRUE(server.start());
  auto config = configFor(server.port());
  ASSERT_NE(config, nullptr);
  auto targets = limitTargets(*config, *requestFromWords({"client_address=10.9.9.9"}), "per-net");
  ASSERT_EQ(targets.size(), 1u);
  const std::string key = config->redis.keyPrefix + targets[0].key;
  const std::string field = std::to_string(targets[0].rule->windows[0].periodUs);
  redisContext* c = redisConnect("127.0.0.1", server.port());
  ASSERT_TRUE(c != nullptr && c->err == 0);
  auto admin = RedisAdmin::connect(config->redis);
  ASSERT_TRUE(admin.isOk());
  for (const std::string& bad :
       {std::string("abc:5"), std::string("99999999999999999999999:5"), std::string("12:x"),
        std::string(""), std::string("-5:5"), std::string("5\n\x01:5"), std::string("1:5:7")}) {
    auto* r =
        static_cast<redisReply*>(redisCommand(c, "HSET %b %b %b", key.data(), key.size(),
                                              field.data(), field.size(), bad.data(), bad.size()));
    ASSERT_NE(r, nullptr);
    freeReplyObject(r);
    auto shown = admin->show(targets[0]);
    ASSERT_FALSE(shown.isOk()) << bad;
    const std::string& message = shown.status().message();
    EXPECT_NE(message.find("redis: malformed counter in " + key), std::string::npos) << message;
    for (char ch : message) {
      EXPECT_TRUE(ch >= 0x20 && ch < 0x7f) << message;
    }
  }
  auto* r = static_cast<redisReply*>(
      redisCommand(c, "HSET %s %s 1700000000000000:5", key.c_str(), field.c_str()));
  freeReplyObject(r);
  EXPECT_TRUE(admin->show(targets[0]).isOk());
  redisFree(c);
}

TEST(LimitsAdmin, UnreachableRedisIsAnError) {
  RedisStoreSettings s;
  s.port = testing::freeLoopbackPort();
  EXPECT_FALSE(RedisAdmin::connect(s).isOk());
}

}  // namespace
}  // namespace relaykit::policy

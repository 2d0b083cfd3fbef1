// SPDX-License-Identifier: Apache-2.0
// redis_acl_test.cc: the Redis store and `relaykit limits` as an ACL user with minimal rights
// (redis: username + password_file) against a real redis-server: they work with exactly the
// commands documented in policyd/README.md; a wrong password is a clear error that names the
// user and never the secret.
#include <event2/event.h>
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <thread>

#include "policyd/limits_admin.h"
#include "policyd/policy_engine.h"
#include "policyd/redis_store.h"
#include "redis_test_server.h"

namespace relaykit::policy {
namespace {

using testing::RedisTestServer;

constexpr const char* kSecret = "s3cret-Pa55";
// The rights policyd/README.md documents: the script's commands (EVALSHA, EVAL; inside it TIME,
// HMGET, HSET, PEXPIRE) for the daemon, HGET, DEL, SCAN, TIME for `relaykit limits`; keys under
// the prefix only.
constexpr const char* kAclDaemon =
    "ACL SETUSER relaykit on >s3cret-Pa55 resetkeys ~relaykit:* resetchannels -@all +evalsha "
    "+eval +time +hmget +hset +pexpire";
constexpr const char* kAclAdmin = "ACL SETUSER relaykit +hget +del +scan";

StatusOr<StoreResult> runOnLoop(event_base* base, RateStore* store, const StoreRequest& request) {
  std::optional<StatusOr<StoreResult>> result;
  store->evaluate(request, [&result](StatusOr<StoreResult> r) { result = std::move(r); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!result && std::chrono::steady_clock::now() < deadline) {
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return result ? std::move(*result) : StatusOr<StoreResult>(Status::error("no answer in time"));
}

class RedisAclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::redisAvailable()) {
      GTEST_SKIP() << "redis-server not installed";
    }
    ASSERT_TRUE(server_.start());
    ASSERT_EQ(server_.command(kAclDaemon), "OK");
    base_ = event_base_new();
  }
  void TearDown() override {
    if (base_ != nullptr) {
      event_base_free(base_);
    }
  }
  RedisStoreSettings settings(const std::string& password) const {
    RedisStoreSettings s;
    s.port = server_.port();
    s.timeoutMs = 1000;
    s.username = "relaykit";
    s.password = password;
    return s;
  }
  StatusOr<StoreResult> charge(RedisStore& store) {
    StoreRequest r{{StoreCharge{"rl:{acl}:l", {{3, 60000000}}, 1, true}}, true};
    return runOnLoop(base_, &store, r);
  }

  RedisTestServer server_;
  event_base* base_ = nullptr;
};

TEST_F(RedisAclTest, StoreWorksWithMinimalRights) {
  server_.command("SCRIPT FLUSH");  // the first decision loads the script through EVAL
  RedisStore store(base_, settings(kSecret));
  store.start();
  for (int i = 0; i < 3; ++i) {
    StatusOr<StoreResult> r = charge(store);
    ASSERT_TRUE(r.isOk()) << r.status().message();
    EXPECT_TRUE(r->committed);
  }
  EXPECT_FALSE(charge(store)->committed);
  EXPECT_EQ(server_.command("EXISTS relaykit:rl:{acl}:l"), "1");
  // The rights are really minimal: the same user may not touch other keys or run FLUSHALL.
  EXPECT_NE(server_.command("ACL DRYRUN relaykit FLUSHALL").find("no permissions"),
            std::string::npos);
  EXPECT_NE(server_.command("ACL DRYRUN relaykit HSET other:k f v").find("no permissions"),
            std::string::npos);
}

TEST_F(RedisAclTest, WrongPasswordIsAClearErrorWithoutTheSecret) {
  const std::string wrong = "wrong-Secret-42";
  ::testing::internal::CaptureStderr();
  {
    RedisStore store(base_, settings(wrong));
    store.start();
    StatusOr<StoreResult> r = charge(store);
    EXPECT_FALSE(r.isOk());
  }
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("redis: AUTH as user \"relaykit\" failed: WRONGPASS"), std::string::npos)
      << log;
  EXPECT_EQ(log.find(wrong), std::string::npos) << log;
  EXPECT_EQ(log.find(kSecret), std::string::npos) << log;
  EXPECT_EQ(server_.command("EXISTS relaykit:rl:{acl}:l"), "0");
}

TEST_F(RedisAclTest, LimitsAdminWorksWithMinimalRightsAndReportsAuthFailures) {
  ASSERT_EQ(server_.command(kAclAdmin), "OK");
  {
    RedisStore store(base_, settings(kSecret));
    store.start();
    ASSERT_TRUE(charge(store).isOk());
  }
  Diagnostics diags;
  auto config = loadConfigText(
      "policy:\n  store: redis\n  limits:\n    - {name: l, key: [sender], "
      "max: 3, per: 1m}\n",
      "t.yaml", &diags);
  ASSERT_NE(config, nullptr);
  auto policy = parsePolicyConfig(*config, &diags);
  ASSERT_NE(policy, nullptr) << diags.formatAll();

  auto admin = RedisAdmin::connect(settings(kSecret));
  ASSERT_TRUE(admin.isOk()) << admin.status().message();
  auto counts = admin->count("");
  ASSERT_TRUE(counts.isOk()) << counts.status().message();
  EXPECT_EQ((*counts)["l"], 1);
  auto targets = limitTargets(*policy, *requestFromWords({"sender=a@b.example"}), "");
  ASSERT_EQ(targets.size(), 1u);
  auto shown = admin->show(targets[0]);
  ASSERT_TRUE(shown.isOk()) << shown.status().message();
  EXPECT_EQ((*shown)[0].remaining, 3);
  auto reset = admin->resetAll("");
  ASSERT_TRUE(reset.isOk()) << reset.status().message();
  EXPECT_EQ(*reset, 1);

  auto refused = RedisAdmin::connect(settings("not-it-7"));
  ASSERT_FALSE(refused.isOk());
  const std::string& message = refused.status().message();
  EXPECT_NE(message.find("AUTH as user \"relaykit\" failed"), std::string::npos) << message;
  EXPECT_NE(message.find("WRONGPASS"), std::string::npos) << message;
  EXPECT_EQ(message.find("not-it-7"), std::string::npos) << message;
}

TEST(RedisAclConfig, UsernameNeedsPasswordFile) {
  Diagnostics diags;
  auto config =
      loadConfigText("policy:\n  store: redis\nredis:\n  username: relaykit\n", "t.yaml", &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  EXPECT_EQ(parsePolicyConfig(*config, &diags), nullptr);
  EXPECT_NE(diags.formatAll().find("redis username \"relaykit\" needs password_file"),
            std::string::npos)
      << diags.formatAll();
}

TEST(RedisSentinelConfig, SentinelsAndMasterNameGoTogether) {
  Diagnostics diags;
  auto config = loadConfigText(
      "policy:\n  store: redis\nredis:\n  sentinels: [127.0.0.1:26379, \"[::1]:26380\"]\n"
      "  master_name: mymaster\n",
      "t.yaml", &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  auto policy = parsePolicyConfig(*config, &diags);
  ASSERT_NE(policy, nullptr) << diags.formatAll();
  ASSERT_EQ(policy->redis.sentinels.size(), 2u);
  EXPECT_EQ(policy->redis.sentinels[0], std::make_pair(std::string("127.0.0.1"), 26379));
  EXPECT_EQ(policy->redis.masterName, "mymaster");
  for (const char* bad : {"redis:\n  sentinels: [127.0.0.1:26379]\n", "redis:\n  master_name: m\n",
                          "redis:\n  sentinels: [unix:/x]\n  master_name: m\n"}) {
    Diagnostics d;
    EXPECT_EQ(loadConfigText(bad, "t.yaml", &d), nullptr) << bad;
    EXPECT_NE(d.formatAll().find("redis"), std::string::npos) << d.formatAll();
  }
}

}  // namespace
}  // namespace relaykit::policy

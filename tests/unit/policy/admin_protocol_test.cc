// SPDX-License-Identifier: Apache-2.0
// admin_protocol_test.cc: the `relaykit limits` <-> relaykit-policyd admin line protocol, and its
// execution against a memory store with an injected clock.
#include "policyd/admin_protocol.h"

#include <gtest/gtest.h>

#include "policyd/memory_store.h"
#include "policyd/rate_key.h"

namespace relaykit::policy {
namespace {

constexpr std::int64_t kMinute = 60LL * 1000000;

TEST(AdminProtocol, RequestsRoundTrip) {
  AdminCommand show;
  show.kind = AdminCommand::Kind::kShow;
  show.key = "rl:{00ff}:per-client";
  show.windows = {RateWindow{5, kMinute}, RateWindow{50, 60 * kMinute}};
  const std::string line = formatAdminCommand(show);
  EXPECT_EQ(line, "show rl:{00ff}:per-client 5/60000000 50/3600000000\n");
  auto parsed = parseAdminCommand(line.substr(0, line.size() - 1));
  ASSERT_TRUE(parsed.isOk()) << parsed.status().message();
  EXPECT_EQ(parsed->kind, AdminCommand::Kind::kShow);
  EXPECT_EQ(parsed->key, show.key);
  ASSERT_EQ(parsed->windows.size(), 2u);
  EXPECT_EQ(parsed->windows[1].max, 50);
  EXPECT_EQ(parsed->windows[1].periodUs, 60 * kMinute);

  AdminCommand all;
  all.kind = AdminCommand::Kind::kResetAll;
  EXPECT_EQ(formatAdminCommand(all), "resetall\n");
  all.limit = "per-client";
  EXPECT_EQ(formatAdminCommand(all), "resetall per-client\n");
  auto p = parseAdminCommand("count  per-client");
  ASSERT_TRUE(p.isOk());
  EXPECT_EQ(p->kind, AdminCommand::Kind::kCount);
  EXPECT_EQ(p->limit, "per-client");
}

TEST(AdminProtocol, MalformedRequestsAreRefused) {
  for (const char* bad :
       {"", "   ", "frob", "show", "show key", "show key 5", "show key 5/x", "show key 0/60",
        "show key -1/60", "show key 5/60/7", "reset", "reset a b", "count a b", "resetall a b"}) {
    EXPECT_FALSE(parseAdminCommand(bad).isOk()) << "\"" << bad << "\"";
  }
  EXPECT_FALSE(parseAdminCommand(std::string(kMaxAdminLine + 1, 'x')).isOk());
}

TEST(AdminProtocol, ExecutesAgainstTheMemoryStore) {
  std::int64_t now = 1000 * kMinute;
  MemoryStore store([&] { return now; });
  const std::string a = storeKeyFor("client_address=10.0.0.1", "per-client");
  const std::string b = storeKeyFor("client_address=10.0.0.2", "per-client");
  const std::string c = storeKeyFor("sender=x@y", "per-sender");
  const std::vector<RateWindow> windows = {RateWindow{5, kMinute}};
  for (const std::string& key : {a, a, a, b, c}) {
    StoreRequest r;
    r.commit = true;
    r.charges.push_back(StoreCharge{key, windows, 1, true});
    ASSERT_TRUE(store.evaluateNow(r).isOk());
  }

  AdminCommand show;
  show.kind = AdminCommand::Kind::kShow;
  show.key = a;
  show.windows = windows;
  std::string reply = executeAdminCommand(store, show);
  ASSERT_EQ(reply.back(), '\n');
  auto states = parseShowReply(reply.substr(0, reply.size() - 1));
  ASSERT_TRUE(states.isOk()) << reply;
  ASSERT_EQ(states->size(), 1u);
  EXPECT_EQ((*states)[0].remaining, 2);  // 3 of 5 used
  EXPECT_EQ((*states)[0].window.max, 5);
  EXPECT_EQ((*states)[0].fullResetUs, 3 * kMinute / 5);

  AdminCommand count;
  count.kind = AdminCommand::Kind::kCount;
  reply = executeAdminCommand(store, count);
  auto counts = parseLimitCountsReply(reply.substr(0, reply.size() - 1));
  ASSERT_TRUE(counts.isOk()) << reply;
  EXPECT_EQ(counts->at("per-client"), 2);
  EXPECT_EQ(counts->at("per-sender"), 1);
  count.limit = "per-sender";
  EXPECT_EQ(executeAdminCommand(store, count), "ok per-sender=1\n");

  AdminCommand reset;
  reset.kind = AdminCommand::Kind::kReset;
  reset.key = a;
  EXPECT_EQ(executeAdminCommand(store, reset), "ok 1\n");
  EXPECT_EQ(executeAdminCommand(store, reset), "ok 0\n");
  reply = executeAdminCommand(store, show);
  states = parseShowReply(reply.substr(0, reply.size() - 1));
  ASSERT_TRUE(states.isOk());
  EXPECT_EQ((*states)[0].remaining, 5);

  AdminCommand all;
  all.kind = AdminCommand::Kind::kResetAll;
  all.limit = "per-client";
  EXPECT_EQ(executeAdminCommand(store, all), "ok 1\n");  // b
  all.limit.clear();
  EXPECT_EQ(executeAdminCommand(store, all), "ok 1\n");  // c
  EXPECT_EQ(store.size(), 0u);
}

TEST(AdminProtocol, RepliesParseOrFail) {
  auto n = parseCountReply("ok 7");
  ASSERT_TRUE(n.isOk());
  EXPECT_EQ(*n, 7);
  auto err = parseCountReply("error the store is redis");
  ASSERT_FALSE(err.isOk());
  EXPECT_EQ(err.status().message(), "the store is redis");
  EXPECT_FALSE(parseCountReply("ok").isOk());
  EXPECT_FALSE(parseCountReply("okay 1").isOk());
  EXPECT_FALSE(parseShowReply("ok 5/60/0/5").isOk());  // four numbers, five expected
  EXPECT_FALSE(parseLimitCountsReply("ok a=").isOk());
  EXPECT_FALSE(parseLimitCountsReply("ok =3").isOk());
  auto empty = parseLimitCountsReply("ok");
  ASSERT_TRUE(empty.isOk());
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace relaykit::policy

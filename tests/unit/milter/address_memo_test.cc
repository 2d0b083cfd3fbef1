// SPDX-License-Identifier: Apache-2.0
// address_memo_test.cc: the per-snapshot memos of rewrite_from / rewrite_sender
// (milters/address_memo.h): what they remember, their bound, and that a rewrite answers the same
// with a warm, a cold or no memo.
#include "milters/address_memo.h"

#include <gtest/gtest.h>

#include "milters/message_rewriter.h"
#include "tests/unit/milter/rewrite_fixture.h"

namespace relaykit::milter {
namespace {

// Everything a caller sees of one rewrite, as text.
std::string outcomeText(const RewriteOutcome& out) {
  std::string text = out.error ? "error: " + out.errorReason + "\n" : std::string();
  for (const EditOp& op : out.plan) {
    text += "op " + std::to_string(static_cast<int>(op.kind)) + " " + op.name + " " +
            std::to_string(op.index) + " [" + op.value + "] [" + op.args + "]\n";
  }
  for (const std::string& c : out.changes) {
    text += "change " + c + "\n";
  }
  for (const std::string& n : out.notes) {
    text += "note " + n + "\n";
  }
  return text + render(out.headers);
}

TEST(AddressMemoTest, RemembersFoundAndNotFoundButNeverErrors) {
  AddressMemo memo;
  memo.remember("a@x", LookupResult::found("b@x"));
  memo.remember("c@x", LookupResult::notFound());
  memo.remember("d@x", LookupResult::tempError("down"));
  memo.remember("e@x", LookupResult::permError("bad"));
  ASSERT_TRUE(memo.find("a@x"));
  EXPECT_EQ(memo.find("a@x")->value(), "b@x");
  ASSERT_TRUE(memo.find("c@x"));
  EXPECT_TRUE(memo.find("c@x")->isNotFound());
  EXPECT_FALSE(memo.find("d@x"));
  EXPECT_FALSE(memo.find("e@x"));
  EXPECT_EQ(memo.size(), 2u);
}

TEST(AddressMemoTest, IsBounded) {
  AddressMemo memo;
  memo.remember(std::string(kMaxAddressMemoKeyBytes + 1, 'a'), LookupResult::notFound());
  EXPECT_EQ(memo.size(), 0u);
  for (std::size_t i = 0; i < kMaxAddressMemoEntries + 10; ++i) {
    memo.remember("user" + std::to_string(i) + "@x", LookupResult::notFound());
    ASSERT_LE(memo.size(), kMaxAddressMemoEntries);
  }
  EXPECT_EQ(memo.size(), 10u);  // started again empty when full
  EXPECT_TRUE(memo.find("user" + std::to_string(kMaxAddressMemoEntries + 9) + "@x"));
  EXPECT_FALSE(memo.find("user0@x"));
}

// The memos are invisible in the result: warm, cold or absent, the same outcome.
TEST(AddressMemoTest, RewritesAreTheSameWithWarmColdOrNoMemo) {
  auto warm = load(R"(
  header_checks: |
    /^X-Originating-IP:/   IGNORE
  rewrite_from:
    table: generic
    headers: [From, Reply-To]
  rewrite_sender:
    table: canonical
)");
  ASSERT_TRUE(warm);
  auto none = std::make_shared<MilterConfig>(*warm);
  none->fromMemo.reset();
  none->fromHeaderMemo.reset();
  none->senderMemo.reset();
  struct Case {
    std::string sender;
    std::vector<HeaderField> headers;
  };
  const std::vector<Case> cases = {
      {"root@relay.corp.local", {{"From", " <root@relay.corp.local>"}, {"To", " ops@x.example"}}},
      {"root", {{"From", " Root <root@relay.corp.local>"}, {"Reply-To", " x@srv12.corp.local"}}},
      {"a@x.example", {{"From", " \"A\" <a@x.example>, web@localhost"}}},
      {"nobody@example.org", {{"From", " nobody@example.org"}, {"X-Originating-IP", " 1.2.3.4"}}},
      {"root+tag@relay.corp.local", {{"From", " <bob@olddomain.example>"}}},
      {"user@corp.com", {{"From", " not an address list <"}}},  // unparsable: a note
      {"", {{"From", " <root@relay.corp.local>"}}},             // the null sender
  };
  for (int pass = 0; pass < 3; ++pass) {
    for (const Case& c : cases) {
      const Envelope e = env(c.sender);
      EXPECT_EQ(outcomeText(rewriteMessage(*warm, e, c.headers)),
                outcomeText(rewriteMessage(*none, e, c.headers)))
          << "pass " << pass << ", sender <" << c.sender << ">, From" << c.headers[0].value;
    }
  }
  // The cases reach the paths they are meant for.
  const std::string root =
      outcomeText(rewriteMessage(*warm, env(cases[0].sender), cases[0].headers));
  EXPECT_NE(root.find("change from=<root@relay.corp.local> -> <noreply@corp.com>"),
            std::string::npos)
      << root;
  EXPECT_NE(root.find("From: <noreply@corp.com>"), std::string::npos) << root;
  EXPECT_NE(outcomeText(rewriteMessage(*warm, env(cases[2].sender), cases[2].headers))
                .find("change from=<a@x.example> -> <c@x.example>"),
            std::string::npos);
  EXPECT_NE(outcomeText(rewriteMessage(*warm, env(cases[5].sender), cases[5].headers))
                .find("note header From left unchanged"),
            std::string::npos);
  EXPECT_GT(warm->fromMemo->size(), 0u);
  EXPECT_GT(warm->fromHeaderMemo->size(), 0u);
  EXPECT_GT(warm->senderMemo->size(), 0u);
}

TEST(AddressMemoTest, EachSnapshotHasItsOwnMemos) {
  const char* milter = "  rewrite_sender:\n    table: canonical\n";
  auto first = load(milter);
  auto second = load(milter);
  ASSERT_TRUE(first && second);
  EXPECT_NE(first->senderMemo, second->senderMemo);
  rewriteMessage(*first, env("root@relay.corp.local"), {});
  EXPECT_EQ(first->senderMemo->size(), 1u);
  EXPECT_EQ(second->senderMemo->size(), 0u);
}

}  // namespace
}  // namespace relaykit::milter

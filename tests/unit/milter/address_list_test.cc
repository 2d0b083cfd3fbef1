// SPDX-License-Identifier: Apache-2.0
// address_list_test.cc: RFC 5322 address lists: display names, quoting, comments, groups,
// encoded-words, obsolete forms, malformed input, and byte-exact splicing.
#include "milters/address_list.h"

#include <gtest/gtest.h>

namespace relaykit::milter {
namespace {

std::vector<Mailbox> parseOk(const std::string& text) {
  StatusOr<std::vector<Mailbox>> r = parseAddressList(text);
  EXPECT_TRUE(r.isOk()) << text << ": " << r.status().message();
  return r.isOk() ? *r : std::vector<Mailbox>{};
}

TEST(AddressListTest, Simple) {
  auto boxes = parseOk(" root@relay.corp.local");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].address(), "root@relay.corp.local");
  EXPECT_FALSE(boxes[0].angle);
  EXPECT_EQ(boxes[0].displayName, "");
}

TEST(AddressListTest, DisplayNameAndAngle) {
  std::string text = " \"Doe, John\" <john@x.org>";
  auto boxes = parseOk(text);
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].displayName, "\"Doe, John\"");
  EXPECT_EQ(boxes[0].displayText(), "Doe, John");
  EXPECT_EQ(text.substr(boxes[0].specBegin, boxes[0].specEnd - boxes[0].specBegin), "john@x.org");
}

TEST(AddressListTest, SeveralWithCommentsAndFolding) {
  auto boxes = parseOk(" a@x.org (Alice),\n\tBob <b@y.org>, \"c\" <c@z.org> (the, third)");
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0].address(), "a@x.org");
  EXPECT_EQ(boxes[1].displayName, "Bob");
  EXPECT_EQ(boxes[2].address(), "c@z.org");
}

TEST(AddressListTest, QuotedLocalPartStaysQuotedInExternalForm) {
  auto boxes = parseOk(" <\"john doe\"@corp.local>");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].localPart, "john doe");
  EXPECT_EQ(boxes[0].address(), "\"john doe\"@corp.local");
  auto pointless = parseOk(" \"quoted\"@x");
  EXPECT_EQ(pointless[0].address(), "quoted@x");
}

TEST(AddressListTest, GroupsAndEmptyGroups) {
  auto boxes = parseOk(" Team: a@x.org, B <b@x.org>;, undisclosed-recipients:;, c@y.org");
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0].group, "Team");
  EXPECT_EQ(boxes[1].group, "Team");
  EXPECT_EQ(boxes[2].group, "");
  EXPECT_EQ(boxes[2].address(), "c@y.org");
}

TEST(AddressListTest, EncodedWordDisplayName) {
  auto boxes = parseOk(" =?UTF-8?Q?J=C3=B6rg?= <joerg@x.org>");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].displayText(), "J\xC3\xB6rg");
}

TEST(AddressListTest, EightBitDisplayName) {
  auto boxes = parseOk(" J\xC3\xB6rg <joerg@x.org>");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].displayName, "J\xC3\xB6rg");
}

TEST(AddressListTest, ObsoleteForms) {
  auto route = parseOk(" <@relay1,@relay2:user@x.org>");
  ASSERT_EQ(route.size(), 1u);
  EXPECT_EQ(route[0].address(), "user@x.org");
  auto dotted = parseOk(" John Q. Public <jqp@x.org>");
  ASSERT_EQ(dotted.size(), 1u);
  EXPECT_EQ(dotted[0].displayName, "John Q. Public");
  auto spaced = parseOk(" john . doe @ x.org");
  EXPECT_EQ(spaced[0].address(), "john.doe@x.org");
  auto empties = parseOk(" a@x,, ,b@y");
  EXPECT_EQ(empties.size(), 2u);
  auto trailingDot = parseOk(" a@x.org.");
  EXPECT_EQ(trailingDot[0].address(), "a@x.org");
  auto literal = parseOk(" a@[192.0.2.1]");
  EXPECT_EQ(literal[0].domain, "[192.0.2.1]");
  auto bare = parseOk(" root");
  EXPECT_EQ(bare[0].address(), "root");
  EXPECT_TRUE(parseOk(" <>").empty());
}

TEST(AddressListTest, LastAtSplitsLikePostfix) {
  // Postfix internalizes "a@b@x" as localpart "a@b" (quoted again on output) and rewrites it.
  auto boxes = parseOk(" a@b@relay.corp.local");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].localPart, "a@b");
  EXPECT_EQ(boxes[0].address(), "\"a@b\"@relay.corp.local");
  EXPECT_EQ(boxes[0].specBegin, 1u);
  EXPECT_EQ(boxes[0].specEnd, 21u);
}

TEST(AddressListTest, MissingCommaAndStraySemicolonLikePostfix) {
  // Postfix's parser adds a missing comma after "<...>" and ignores a ';' that ends no group.
  auto boxes = parseOk(" <a@x> junk");
  ASSERT_EQ(boxes.size(), 2u);
  EXPECT_EQ(boxes[0].address(), "a@x");
  EXPECT_EQ(boxes[1].address(), "junk");
  boxes = parseOk(" a@x; b@y;");
  ASSERT_EQ(boxes.size(), 2u);
  EXPECT_EQ(boxes[1].address(), "b@y");
  boxes = parseOk(" T: <a@x>; <b@y> c@z");
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0].group, "T");
  EXPECT_EQ(boxes[1].group, "");
  EXPECT_EQ(boxes[2].address(), "c@z");
}

TEST(AddressListTest, RouteAndCommentsInsideTheAddrSpec) {
  std::string text = " Jo <@a,@b:root(c)@(d)relay.corp.local> (e)";
  auto boxes = parseOk(text);
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].address(), "root@relay.corp.local");
  EXPECT_EQ(text.substr(boxes[0].routeBegin, boxes[0].specEnd - boxes[0].routeBegin),
            "@a,@b:root(c)@(d)relay.corp.local");
  EXPECT_EQ(boxes[0].comments, (std::vector<std::string>{"(c)", "(d)"}));
  // The rewritten address keeps the comments behind it (as Postfix writes it) and drops the
  // obsolete route.
  std::string out = spliceAddresses(
      text, {{boxes[0].routeBegin, boxes[0].specEnd, replacementText(boxes[0], "n@corp.com")}});
  EXPECT_EQ(out, " Jo <n@corp.com (c) (d)> (e)");
  auto plain = parseOk(" x@y (outside)");
  EXPECT_TRUE(plain[0].comments.empty());
  EXPECT_EQ(plain[0].routeBegin, plain[0].specBegin);
}

TEST(AddressListTest, AdjacentWordsAndStrayAngleLikePostfix) {
  // Postfix (tok822) reads "John Smith a@x" as three addresses and ignores a '>' after a bare
  // address; it rewrites the address in both (explore_rewrite_from.py saw it do so).
  auto boxes = parseOk(" John Smith root@relay.corp.local");
  ASSERT_EQ(boxes.size(), 3u);
  EXPECT_EQ(boxes[0].address(), "John");
  EXPECT_EQ(boxes[1].address(), "Smith");
  EXPECT_EQ(boxes[2].address(), "root@relay.corp.local");
  boxes = parseOk(" A B. C \"Q\" (c) root@relay.corp.local Name");
  ASSERT_EQ(boxes.size(), 5u);
  EXPECT_EQ(boxes[1].address(), "B.C");
  EXPECT_EQ(boxes[3].address(), "root@relay.corp.local");
  EXPECT_EQ(boxes[4].address(), "Name");
  boxes = parseOk(" root@relay.corp.local>");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].address(), "root@relay.corp.local");
  EXPECT_EQ(spliceAddresses(" root@relay.corp.local>",
                            {{boxes[0].specBegin, boxes[0].specEnd, "noreply@corp.com"}}),
            " noreply@corp.com>");
}

TEST(AddressListTest, RewriteWritesTheMissingSeparatorLikePostfix) {
  // Postfix reads adjacent words as separate addresses and, when it rewrites the header, writes
  // ", " between them (probed with smtp_generic_maps and canonical_maps: '""x' becomes
  // "R@example.com, R@example.com", "<a@b>c@d" becomes "<R@example.com>, R@example.com").
  struct Case {
    const char* in;
    const char* out;
  } cases[] = {
      {"\"\"x", "r0@example.com, r1@example.com"},
      {"a\":a\"", "r0@example.com, r1@example.com"},
      {" a b", " r0@example.com, r1@example.com"},
      {" <a@b.example>c@d.example", " <r0@example.com>, r1@example.com"},
      {" <a@b.example><c@d.example>", " <r0@example.com>, <r1@example.com>"},
      {" a.\"\"b", " r0@example.com, r1@example.com"},
      {" a@x, b@y", " r0@example.com, r1@example.com"},
      {" G: a b;, c", " G: r0@example.com, r1@example.com;, r2@example.com"},
  };
  for (const Case& c : cases) {
    auto boxes = parseOk(c.in);
    std::vector<AddressReplacement> replacements;
    for (size_t i = 0; i < boxes.size(); ++i) {
      replacements.push_back(
          {boxes[i].routeBegin, boxes[i].specEnd, "r" + std::to_string(i) + "@example.com"});
    }
    EXPECT_EQ(rewriteAddressList(c.in, boxes, replacements), c.out) << c.in;
    EXPECT_EQ(rewriteAddressList(c.in, boxes, {}), c.in) << c.in;
  }
  auto boxes = parseOk(" a b c");
  EXPECT_EQ(rewriteAddressList(" a b c", boxes, {{boxes[1].specBegin, boxes[1].specEnd, "n@x"}}),
            " a, n@x, c");
}

TEST(AddressListTest, DisplayTextKeepsQuotesAndBackslashesOfEncodedWords) {
  // "a\"b\\c" in an encoded-word is text: decoding must not be followed by unquoting.
  auto boxes = parseOk(" =?UTF-8?B?YSJiXGM=?= <x@y>");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].displayText(), "a\"b\\c");
  boxes = parseOk(" =?UTF-8?Q?=22q=22?= \"x\\\"y\" <x@y>");
  ASSERT_EQ(boxes.size(), 1u);
  EXPECT_EQ(boxes[0].displayText(), "\"q\" x\"y");
  boxes = parseOk(" Jo (a \"comment\") Doe <x@y>");
  EXPECT_EQ(boxes[0].displayText(), "Jo (a \"comment\") Doe");
}

TEST(AddressListTest, MalformedIsAnError) {
  const char* bad[] = {
      " \"unterminated <a@x>",
      " (unterminated comment a@x",
      " <a@x",
      " <a@x>>",
      " >a@x",
      " a@",
      " Team: a@x",
      " a@[1.2.3.4",
      " <a@x, b@y>",
      " a@x)",
  };
  for (const char* text : bad) {
    EXPECT_FALSE(parseAddressList(text).isOk()) << text;
  }
}

TEST(AddressListTest, RefusesOversizeInput) {
  std::string huge(kMaxAddressListBytes + 1, 'a');
  EXPECT_FALSE(parseAddressList(huge).isOk());
  std::string many;
  for (size_t i = 0; i <= kMaxMailboxes; ++i) {
    many += "a@x,";
  }
  EXPECT_FALSE(parseAddressList(many).isOk());
}

TEST(AddressListTest, SpliceKeepsEveryOtherByte) {
  std::string text = " \"Root (admin)\" <root@relay.corp.local> (c),\n\tcron@relay.corp.local";
  auto boxes = parseOk(text);
  ASSERT_EQ(boxes.size(), 2u);
  std::string out = spliceAddresses(text, {{boxes[1].specBegin, boxes[1].specEnd, "cron@corp.com"},
                                           {boxes[0].specBegin, boxes[0].specEnd, "n@corp.com"}});
  EXPECT_EQ(out, " \"Root (admin)\" <n@corp.com> (c),\n\tcron@corp.com");
}

TEST(AddressListTest, GarbageNeverCrashes) {
  // Every prefix of a tricky header, and some byte soup: must return, ok or not.
  std::string tricky = " \"a\\\"b\" (c (d) \\) e) <@r:x@[1.2.3.4]>, G: \"q\"@y;, =?x?q?y?= <z@w>";
  for (size_t n = 0; n <= tricky.size(); ++n) {
    (void)parseAddressList(tricky.substr(0, n));
  }
  std::string soup;
  for (int i = 0; i < 512; ++i) {
    soup.push_back(static_cast<char>((i * 37) % 256));
  }
  (void)parseAddressList(soup);
}

TEST(AddressListTest, RandomInputFromTrickyAlphabet) {
  // Deterministic pseudo-random strings over the characters that matter to the grammar: every
  // result is either an error or mailboxes whose ranges lie inside the input.
  const std::string alphabet = "ab@.<>,;:\"\\()[] \t\n=?Q_\xC3\xA9";
  unsigned state = 12345;
  for (int n = 0; n < 5000; ++n) {
    std::string text;
    int len = static_cast<int>(state % 40);
    for (int i = 0; i < len; ++i) {
      state = state * 1103515245u + 12345u;
      text.push_back(alphabet[(state >> 16) % alphabet.size()]);
    }
    state = state * 1103515245u + 12345u;
    StatusOr<std::vector<Mailbox>> r = parseAddressList(text);
    if (r.isOk()) {
      for (const Mailbox& b : *r) {
        ASSERT_LE(b.specBegin, b.specEnd) << text;
        ASSERT_LE(b.specEnd, text.size()) << text;
      }
    }
  }
}

}  // namespace
}  // namespace relaykit::milter

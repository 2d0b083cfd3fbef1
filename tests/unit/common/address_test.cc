// SPDX-License-Identifier: Apache-2.0
// address_test.cc: quoting, unquoting and extension splitting as Postfix's quote_822_local,
// split_addr and strip_addr do them.
#include "common/address.h"

#include <gtest/gtest.h>

namespace relaykit {
namespace {

TEST(AddressTest, UnquoteLocalpart) {
  struct Case {
    const char* external;
    const char* internal;
  } cases[] = {
      {"user@example.com", "user@example.com"},
      {"\"john doe\"@corp.local", "john doe@corp.local"},
      {"\"a\\\"b\"@x", "a\"b@x"},
      {"\"a@b\"@x", "a@b@x"},
      {"\"quoted\"@x", "quoted@x"},
      {"", ""},
      {"@a,@b:\"x y\"@c", "@a,@b:x y@c"},
      {"nodomain", "nodomain"},
      {"a@\"b\"", "a@\"b\""},  // text after the last unquoted @ is left alone
  };
  for (const auto& c : cases) {
    EXPECT_EQ(unquoteLocalpart(c.external), c.internal) << c.external;
  }
}

TEST(AddressTest, QuoteLocalpart) {
  struct Case {
    const char* internal;
    bool bare;
    const char* external;
  } cases[] = {
      {"user@example.com", false, "user@example.com"},
      {"john doe@corp.local", false, "\"john doe\"@corp.local"},
      {"a\"b@x", false, "\"a\\\"b\"@x"},
      {"a@b@x", false, "\"a@b\"@x"},
      {"a@b", true, "\"a@b\""},
      {".dot@x", false, "\".dot\"@x"},
      {"dot.@x", false, "\"dot.\"@x"},
      {"a..b@x", false, "\"a..b\"@x"},
      {"a.b@x", false, "a.b@x"},
      {"@x", false, "\"\"@x"},
      {"", false, "\"\""},
      {"j\xc3\xb6rg@x", false, "j\xc3\xb6rg@x"},  // 8-bit clean
      {"user+ext", true, "user+ext"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(quoteLocalpart(c.internal, c.bare), c.external) << c.internal;
    EXPECT_EQ(unquoteLocalpart(quoteLocalpart(c.internal, c.bare)), c.internal) << c.internal;
  }
}

TEST(AddressTest, ExtensionSplitFollowsSplitAddr) {
  struct Case {
    const char* address;
    const char* delimiters;
    const char* stripped;  // nullptr: not split
    const char* extension;
  } cases[] = {
      {"user+ext@x", "+", "user@x", "+ext"},
      {"user+a+b@x", "+", "user@x", "+a+b"},
      {"user-ext+x@d", "+-", "user@d", "-ext+x"},  // the first delimiter of the set splits
      {"user+ext-x@d", "+-", "user@d", "+ext-x"},
      {"user+@x", "+", "user@x", "+"},
      {"+ext@x", "+", nullptr, nullptr},  // never an empty user
      {"user@x", "+", nullptr, nullptr},
      {"user+ext@x", "", nullptr, nullptr},
      {"postmaster+x@d", "+", "postmaster@d", "+x"},  // only the whole localpart is exempt
      {"Postmaster@d", "+", nullptr, nullptr},
      {"postmaster@d", "+", nullptr, nullptr},
      {"MAILER-DAEMON@d", "-", nullptr, nullptr},
      {"mailer-daemon@d", "-", nullptr, nullptr},
      {"double-bounce@d", "-", nullptr, nullptr},
      {"owner-list@d", "-", nullptr, nullptr},
      {"owner-list@d", "+-", nullptr, nullptr},
      {"list-request@d", "-", nullptr, nullptr},
      {"LIST-REQUEST@d", "+-", nullptr, nullptr},
      {"owner-list+x@d", "+", "owner-list@d", "+x"},  // exception only when '-' delimits
      {"list-request+x@d", "+", "list-request@d", "+x"},
      {"-request@d", "-", nullptr, nullptr},  // "-request" alone: empty user
      {"user+ext", "+", "user", "+ext"},      // bare localpart
      {"a+b@c+d", "+", "a@c+d", "+b"},        // only the localpart is split
  };
  for (const auto& c : cases) {
    const auto s = stripExtension(c.address, c.delimiters);
    if (c.stripped == nullptr) {
      EXPECT_FALSE(s.has_value()) << c.address << " " << c.delimiters;
    } else {
      ASSERT_TRUE(s.has_value()) << c.address << " " << c.delimiters;
      EXPECT_EQ(s->address, c.stripped) << c.address;
      EXPECT_EQ(s->extension, c.extension) << c.address;
    }
  }
}

TEST(AddressTest, RewriteLocalContextIsCleanupsLocalRewrite) {
  const std::string o = "relay.corp.local";
  EXPECT_EQ(rewriteLocalContext("root@relay.corp.local", o), "root@relay.corp.local");
  EXPECT_EQ(rewriteLocalContext("Root@relay.corp.local.", o), "Root@relay.corp.local");
  EXPECT_EQ(rewriteLocalContext("root@x..", o), "root@x..");
  EXPECT_EQ(rewriteLocalContext("@a.example,@b.example:admin@x.org", o), "admin@x.org");
  EXPECT_EQ(rewriteLocalContext("\"root\"@x.org", o), "root@x.org");
  EXPECT_EQ(rewriteLocalContext("\"r\\oot\"@x.org", o), "root@x.org");
  EXPECT_EQ(rewriteLocalContext("\"a@b\"@x.org.", o), "\"a@b\"@x.org");
  EXPECT_EQ(rewriteLocalContext("\"john doe\"@x.org", o), "\"john doe\"@x.org");
  EXPECT_EQ(rewriteLocalContext("user", o), "user@relay.corp.local");
  EXPECT_EQ(rewriteLocalContext("\"Root\"", o), "Root@relay.corp.local");
  EXPECT_EQ(rewriteLocalContext("\"a@b\"", o), "a@b");  // smtpd unquotes: domain "b"
  EXPECT_EQ(rewriteLocalContext("user", ""), "user");
  EXPECT_EQ(rewriteLocalContext("host!user", o), "user@host");
  EXPECT_EQ(rewriteLocalContext("a!b!c", o), "b!c@a");
  EXPECT_EQ(rewriteLocalContext("user%host", o), "user@host");
  EXPECT_EQ(rewriteLocalContext("user%host@relay", o), "user%host@relay");
}

}  // namespace
}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// regexp_literal_test.cc: the literals a pattern proves every match starts or ends the subject
// with (anchoredLiteralPrefix, anchoredLiteralSuffix), checked against RE2's own answers.
#include <gtest/gtest.h>
#include <re2/re2.h>

#include <random>
#include <string>

#include "common/regexp_translate.h"

namespace relaykit {
namespace {

TEST(RegexpLiteralTest, AnchoredLiteralPrefix) {
  struct Case {
    const char* pattern;
    const char* prefix;
  };
  const Case cases[] = {
      {"^Subject:", "Subject:"},
      {"^X-Originating-IP:", "X-Originating-IP:"},
      {"^Subject: hello", "Subject:"},
      {"^Subj?ect", "Sub"},
      {"^Subject+:", "Subjec"},
      {"^Ab*c", "A"},
      {"^ab{2}", "a"},
      {"^Sub(ject)?", "Sub"},
      {"^Sub[jJ]ect", "Sub"},
      {"^Sub\\ject", "Sub"},
      {"^a.b", "a"},
      {"^a$", "a"},
      {"^a", "a"},
      {"^", ""},
      {"^*a", ""},
      {"^(Subject|From):", ""},
      {"^Subject:|^From:", ""},
      {"^Subject:.*[|]", ""},
      {"Subject:", ""},
      {"(^Subject:)", ""},
      {"\\ASubject:", ""},
      {"", ""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(anchoredLiteralPrefix(c.pattern, PatternCase::kSensitive).text, c.prefix)
        << c.pattern;
    EXPECT_EQ(anchoredLiteralPrefix(c.pattern, PatternCase::kAsciiFold).text, c.prefix)
        << c.pattern;
  }
  // RE2's UTF-8 case folding matches U+212A for 'k' and U+017F for 's': the prefix stops there.
  EXPECT_EQ(anchoredLiteralPrefix("^Received:", PatternCase::kUnicodeFold).text, "Received:");
  EXPECT_EQ(anchoredLiteralPrefix("^X-Spam:", PatternCase::kUnicodeFold).text, "X-");
  EXPECT_EQ(anchoredLiteralPrefix("^Subject:", PatternCase::kUnicodeFold).text, "");
  EXPECT_EQ(anchoredLiteralPrefix("^Dkim", PatternCase::kUnicodeFold).text, "D");
  EXPECT_TRUE(anchoredLiteralPrefix("^a", PatternCase::kUnicodeFold).foldCase);
  EXPECT_FALSE(anchoredLiteralPrefix("^a", PatternCase::kSensitive).foldCase);
  LiteralPrefix folded{"From:", true};
  EXPECT_TRUE(folded.begins("FROM: x"));
  EXPECT_FALSE(folded.begins("Fro"));
  LiteralPrefix exact{"From:", false};
  EXPECT_FALSE(exact.begins("FROM: x"));
  EXPECT_TRUE(exact.begins("From:"));
}

TEST(RegexpLiteralTest, AnchoredLiteralSuffix) {
  struct Case {
    const char* pattern;
    const char* suffix;
  };
  const Case cases[] = {
      {"^From:.*<.*@localhost>$", "@localhost>"},
      {"a$", "a"},
      {"x y=z, w;$", "x y=z, w;"},
      {".*foo$", "foo"},
      {"fo+o$", "o"},
      {"foo?$", ""},
      {"foo*$", ""},
      {"fo{2}$", ""},
      {"(foo)$", ""},
      {"[ab]c$", "c"},
      {"[ab]$", ""},
      {"a\\.com$", "com"},
      {"\\d$", ""},
      {"\\pN$", ""},
      {"\\x41$", ""},
      {"abc\\$", ""},
      {"abc\\\\$", ""},
      {"a|b$", ""},
      {"(?i)abc$", ""},
      {"ab(?m)c$", ""},
      {"\\Qa.b$", ""},
      {"abc", ""},
      {"$", ""},
      {"", ""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(anchoredLiteralSuffix(c.pattern, PatternCase::kSensitive).text, c.suffix)
        << c.pattern;
    EXPECT_EQ(anchoredLiteralSuffix(c.pattern, PatternCase::kAsciiFold).text, c.suffix)
        << c.pattern;
  }
  // RE2's UTF-8 case folding matches U+212A for 'k' and U+017F for 's': the suffix starts after.
  EXPECT_EQ(anchoredLiteralSuffix("@localhost>$", PatternCase::kUnicodeFold).text, "t>");
  EXPECT_EQ(anchoredLiteralSuffix("bark$", PatternCase::kUnicodeFold).text, "");
  EXPECT_EQ(anchoredLiteralSuffix("@corp\\.com$", PatternCase::kUnicodeFold).text, "com");
  LiteralSuffix folded{"@Corp.com>", true};
  EXPECT_TRUE(folded.ends("From: <a@CORP.COM>"));
  EXPECT_FALSE(folded.ends("corp.com>"));
  LiteralSuffix exact{"@Corp.com>", false};
  EXPECT_FALSE(exact.ends("From: <a@CORP.COM>"));
  EXPECT_TRUE(exact.ends("@Corp.com>"));
}

// Whatever RE2 matches ends with the suffix read off the pattern: random patterns (literal
// runs, escapes, classes, quantifiers, flags) against random subjects, in every case mode.
TEST(RegexpLiteralTest, AnchoredLiteralSuffixNeverHidesAMatch) {
  std::mt19937 rng(20261207);
  const char* atoms[] = {"a",    "b",  "k",  "s",     "@",     ">",    " ",    ".",  "\\.", "\\w",
                         "[ab]", "b+", "a?", "(a|k)", "\\x61", "(?i)", "\\pL", "c*", "\\Qa"};
  const char* pieces[] = {"a",        "b",  "A", "K", "s", "S", "@", ">", " ", "\xe2\x84\xaa",
                          "\xc5\xbf", "\n", "x", "."};
  const std::size_t atomCount = sizeof(atoms) / sizeof(atoms[0]);
  const std::size_t pieceCount = sizeof(pieces) / sizeof(pieces[0]);
  int proven = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string pattern;
    const int atomsInPattern = 1 + static_cast<int>(rng() % 4);
    for (int j = 0; j < atomsInPattern; ++j) {
      pattern += atoms[rng() % atomCount];
    }
    pattern += '$';
    for (int mode = 0; mode < 3; ++mode) {
      re2::RE2::Options o;
      o.set_log_errors(false);
      o.set_case_sensitive(mode == 0);
      o.set_encoding(mode == 2 ? re2::RE2::Options::EncodingLatin1
                               : re2::RE2::Options::EncodingUTF8);
      re2::RE2 re(pattern, o);
      if (!re.ok()) {
        continue;
      }
      const PatternCase c = mode == 0   ? PatternCase::kSensitive
                            : mode == 1 ? PatternCase::kUnicodeFold
                                        : PatternCase::kAsciiFold;
      const LiteralSuffix suffix = anchoredLiteralSuffix(pattern, c);
      proven += suffix.text.empty() ? 0 : 1;
      for (int k = 0; k < 20; ++k) {
        std::string subject;
        const int len = static_cast<int>(rng() % 6);
        for (int m = 0; m < len; ++m) {
          subject += pieces[rng() % pieceCount];
        }
        if (re2::RE2::PartialMatch(subject, re)) {
          EXPECT_TRUE(suffix.ends(subject)) << pattern << " mode " << mode << " on " << subject;
        }
      }
    }
  }
  EXPECT_GT(proven, 1000);  // the test reaches patterns with a suffix
}

}  // namespace
}  // namespace relaykit

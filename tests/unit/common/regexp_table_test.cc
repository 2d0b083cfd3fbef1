// SPDX-License-Identifier: Apache-2.0
// regexp_table_test.cc: regexp_table(5)/pcre_table(5) parsing and matching, POSIX -> RE2
// translation, and every diagnostic the parser gives.
#include "common/regexp_table.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "common/regexp_translate.h"
#include "tests/unit/common/random_regexp_table.h"

namespace relaykit {
namespace {

std::unique_ptr<RegexpTable> parseOk(const std::string& text,
                                     RegexpDialect dialect = RegexpDialect::kPosix,
                                     bool subst = true) {
  Diagnostics d;
  auto t = RegexpTable::parse(text, {"t", 1, 0}, {dialect, subst}, &d);
  EXPECT_NE(t, nullptr) << d.formatAll();
  EXPECT_FALSE(d.hasErrors()) << d.formatAll();
  return t;
}

std::string diagsOf(const std::string& text, RegexpDialect dialect = RegexpDialect::kPosix,
                    bool subst = true) {
  Diagnostics d;
  RegexpTable::parse(text, {"t", 1, 0}, {dialect, subst}, &d);
  return d.formatAll();
}

std::string get(const RegexpTable& t, const std::string& key) {
  auto m = t.match(key);
  auto linear = t.matchLinear(key);
  EXPECT_EQ(m.has_value(), linear.has_value()) << key;
  if (m && linear) {
    EXPECT_EQ(m->value, linear->value) << key;
  }
  return m ? m->value : std::string("<none>");
}

TEST(RegexpTableTest, ManPageExamples) {
  // regexp_table(5) EXAMPLES
  auto t = parseOk(
      "# Disallow sender-specified routing. This is a must if you relay mail\n"
      "# for other domains.\n"
      "/[%!@].*[%!@]/       550 Sender-specified routing rejected\n"
      "\n"
      "# Postmaster is OK, that way they can talk to us about how to fix\n"
      "# their problem.\n"
      "/^postmaster@/       OK\n"
      "\n"
      "# Protect your outgoing majordomo exploders\n"
      "if !/^owner-/\n"
      "/^(.*)-outgoing@(.*)$/ 550 Use ${1}@${2} instead\n"
      "endif\n");
  EXPECT_EQ(get(*t, "a%b@c"), "550 Sender-specified routing rejected");
  EXPECT_EQ(get(*t, "Postmaster@example.com"), "OK");
  EXPECT_EQ(get(*t, "list-outgoing@example.com"), "550 Use list@example.com instead");
  EXPECT_EQ(get(*t, "owner-list-outgoing@example.com"), "<none>");
  EXPECT_EQ(t->ruleCount(), 3u);
}

TEST(RegexpTableTest, FlagsToggleDefaults) {
  auto t = parseOk(
      "/^case$/i sensitive\n"
      "/^CASE2$/ insensitive\n"
      "/^a.b$/ dotnl\n"
      "/^c.d$/m nodotnl\n"
      "/^line$/m multiline\n");
  EXPECT_EQ(get(*t, "case"), "sensitive");
  EXPECT_EQ(get(*t, "CASE"), "<none>");
  EXPECT_EQ(get(*t, "case2"), "insensitive");
  EXPECT_EQ(get(*t, "a\nb"), "dotnl");
  EXPECT_EQ(get(*t, "c\nd"), "<none>");
  EXPECT_EQ(get(*t, "first\nline\nlast"), "multiline");
}

TEST(RegexpTableTest, SearchNotAnchoredAndFirstMatchWins) {
  auto t = parseOk("/b/ first\n/abc/ second\n/^abc$/ third\n");
  EXPECT_EQ(get(*t, "xxbxx"), "first");
  EXPECT_EQ(get(*t, "abc"), "first");
}

TEST(RegexpTableTest, Substitution) {
  auto t = parseOk(
      "/^(a)(b)?(c)$/ [$1][${2}][$(3)][$$][$$1]\n"
      "/^(x+)(y*)@(.*)$/ $1-$2-$3\n"
      "/^long (a|ab)(c|bcd)(d*)$/ <$1|$2|$3>\n");
  EXPECT_EQ(get(*t, "ac"), "[a][][c][$][$1]");
  EXPECT_EQ(get(*t, "ABC"), "[A][B][C][$][$1]");
  EXPECT_EQ(get(*t, "xx@d"), "xx--d");
  // POSIX leftmost-longest overall match.
  EXPECT_EQ(get(*t, "long abcd"), "<a|bcd|>");
}

TEST(RegexpTableTest, NegationAndIfNesting) {
  auto t = parseOk(
      "!/@example\\.com$/ not-example\n"
      "if /^a/\n"
      "if !/b$/\n"
      "/./ a-not-b\n"
      "endif\n"
      "/./ a-and-b\n"
      "endif\n"
      "/./ other\n");
  EXPECT_EQ(get(*t, "x@other.org"), "not-example");
  EXPECT_EQ(get(*t, "ax@example.com"), "a-not-b");
  EXPECT_EQ(get(*t, "aexample.com@example.com"), "a-not-b");
  t = parseOk(
      "if /^a/\n"
      "if !/m$/\n"
      "/./ a-not-m\n"
      "endif\n"
      "/./ a-and-m\n"
      "endif\n"
      "/./ other\n");
  EXPECT_EQ(get(*t, "ax"), "a-not-m");
  EXPECT_EQ(get(*t, "axm"), "a-and-m");
  EXPECT_EQ(get(*t, "bx"), "other");
}

TEST(RegexpTableTest, IfWithoutEndifCoversTheRest) {
  Diagnostics d;
  auto t =
      RegexpTable::parse("if /^a/\n/x/ inside\n", {"t", 1, 0}, {RegexpDialect::kPosix, true}, &d);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(d.formatAll(), "t:1:1: warning: IF has no matching ENDIF\n");
  EXPECT_EQ(get(*t, "ax"), "inside");
  EXPECT_EQ(get(*t, "bx"), "<none>");
}

TEST(RegexpTableTest, SecondPatternAndDelimiters) {
  auto t = parseOk(
      "/^a/!/b$/ a-not-b\n"
      "|^x/y$| pipe\n"
      "#comment\n"
      "   # indented comment\n"
      "/^cont/ part1\n"
      "  part2\n"
      "/a\\/b/ escaped-delim\n");
  EXPECT_EQ(get(*t, "ac"), "a-not-b");
  EXPECT_EQ(get(*t, "ab"), "<none>");
  EXPECT_EQ(get(*t, "x/y"), "pipe");
  EXPECT_EQ(get(*t, "continue"), "part1  part2");
  EXPECT_EQ(get(*t, "za/b"), "escaped-delim");
}

TEST(RegexpTableTest, PosixTranslation) {
  auto t = parseOk(
      "/^q[\\d]$/ backslash-in-bracket\n"
      "/^[]a]$/ bracket-first\n"
      "/^[^]a]x$/ negated-bracket-first\n"
      "/^w{,2}z$/ interval\n"
      "/\\<word\\>/ word-boundary\n"
      "/^[[:digit:]]+$/ digits\n"
      "/^j[^x]k$/m nonl-class\n"
      "/^[[=e=]]q$/ equiv\n");
  EXPECT_EQ(get(*t, "q\\"), "backslash-in-bracket");
  EXPECT_EQ(get(*t, "qd"), "backslash-in-bracket");
  EXPECT_EQ(get(*t, "q1"), "<none>");
  EXPECT_EQ(get(*t, "]"), "bracket-first");
  EXPECT_EQ(get(*t, "bx"), "negated-bracket-first");
  EXPECT_EQ(get(*t, "z"), "interval");
  EXPECT_EQ(get(*t, "wwz"), "interval");
  EXPECT_EQ(get(*t, "a word here"), "word-boundary");
  EXPECT_EQ(get(*t, "swordfish"), "<none>");
  EXPECT_EQ(get(*t, "12345"), "digits");
  EXPECT_EQ(get(*t, "j\nk"), "<none>");
  EXPECT_EQ(get(*t, "jak"), "nonl-class");
  EXPECT_EQ(get(*t, "eq"), "equiv");
}

TEST(RegexpTableTest, PosixBytesAsInTheCLocale) {
  // regcomp(3) in the C locale: every byte is a character, REG_ICASE folds ASCII only, and
  // \s is [[:space:]] (with \v).
  auto t = parseOk(
      "/^Subject:.*x$/ any-byte\n"
      "/^caf\xc3\xa9 / utf8-literal\n"
      "/^\xe9t\xe9$/ latin1-literal\n"
      "/^k$/ ascii-k\n"
      "/^a\\sb$/ space\n"
      "/^a\\Sb$/ non-space\n");
  EXPECT_EQ(get(*t, "Subject: caf\xe9 x"), "any-byte");      // Latin-1
  EXPECT_EQ(get(*t, "Subject: \xc3(broken x"), "any-byte");  // not UTF-8 at all
  EXPECT_EQ(get(*t, "caf\xc3\xa9 "), "utf8-literal");
  EXPECT_EQ(get(*t, "CAF\xc3\x89 "), "<none>");        // no Unicode case folding
  EXPECT_EQ(get(*t, "CAF\xc3\xa9 "), "utf8-literal");  // ASCII letters still fold
  EXPECT_EQ(get(*t, "\xe9t\xe9"), "latin1-literal");
  EXPECT_EQ(get(*t, "\xc9T\xc9"), "<none>");     // no Latin-1 case folding
  EXPECT_EQ(get(*t, "\xe2\x84\xaa"), "<none>");  // KELVIN SIGN is not k
  EXPECT_EQ(get(*t, "a\vb"), "space");
  EXPECT_EQ(get(*t,
                "a\xe9"
                "b"),
            "non-space");
  EXPECT_EQ(translatePosixToRe2("\xe9+", false, true).re2, "(?-i:\\xE9)+");
  // Stacked operators are one operator in glibc; a repeated "^" is an error there.
  EXPECT_EQ(translatePosixToRe2("a**b+?c??d++", false, true).re2, "a*b*c?d+");
  EXPECT_EQ(translatePosixToRe2("a\\**", false, true).re2, "a\\**");
  EXPECT_FALSE(translatePosixToRe2("^*x", false, true).ok);
  EXPECT_TRUE(translatePosixToRe2("\\^*x", false, true).ok);
  // A bracket expression with an 8-bit byte: case-sensitive, ASCII letters' other case added.
  EXPECT_EQ(translatePosixToRe2("[a-c\xe9]", false, true).re2,
            "(?-i:[a-c\xe9"
            "ABC])");
  EXPECT_EQ(translatePosixToRe2("[a-c\xe9]", false, false).re2, "[a-c\xe9]");
  EXPECT_EQ(translatePosixToRe2("[^x\xe9]", false, true).re2, "(?-i:[^x\xe9X])");
  EXPECT_EQ(translatePosixToRe2("[a-c]", false, true).re2, "[a-c]");  // RE2's (?i) suffices
}

TEST(RegexpTableTest, EightBitBracketsFoldAsciiOnly) {
  auto t = parseOk(
      "/^[\xe9x]z$/ class\n"
      "/^[^\xe9q]w$/ negated\n"
      "/^[[:upper:]\xe0]v$/ upper\n");
  EXPECT_EQ(get(*t, "\xe9z"), "class");
  EXPECT_EQ(get(*t, "XZ"), "class");
  EXPECT_EQ(get(*t, "\xc9z"), "<none>");  // Latin-1 É is not é in the C locale
  EXPECT_EQ(get(*t, "Qw"), "<none>");
  EXPECT_EQ(get(*t, "\xc9w"), "negated");
  EXPECT_EQ(get(*t, "\xe9w"), "<none>");
  EXPECT_EQ(get(*t, "bv"), "upper");  // [[:upper:]] under REG_ICASE takes lower case too
  EXPECT_EQ(get(*t, "\xc0v"), "<none>");
}

TEST(RegexpTableTest, TranslateDirect) {
  EXPECT_EQ(translatePosixToRe2("[\\]", false, true).re2, "[\\\\]");
  EXPECT_EQ(translatePosixToRe2("a\\.b", false, true).re2, "a\\.b");
  EXPECT_EQ(translatePosixToRe2("[^a]", true, true).re2, "[^\\na]");
  EXPECT_FALSE(translatePosixToRe2("(a)\\1", false, true).ok);
  EXPECT_EQ(translatePosixToRe2("(a)\\1", false, true).error,
            "back-reference \\1 is not supported by RE2");
  EXPECT_FALSE(translatePosixToRe2("a\\d", false, true).ok);
  EXPECT_FALSE(translatePosixToRe2("[abc", false, true).ok);
  EXPECT_FALSE(translatePosixToRe2("[[.space.]]", false, true).ok);
  EXPECT_FALSE(translatePosixToRe2("(?i)a", false, true).ok);
  EXPECT_FALSE(translatePosixToRe2("a\\", false, true).ok);
}

TEST(RegexpTableTest, PcreDialect) {
  auto t = parseOk(
      "/^a.b$/ nodotall\n"
      "/^c.d$/s dotall\n"
      "/^(\\d+)x$/ digits-$1\n"
      "/^(?:e|f)(g)?$/i sensitive-$1\n"
      "/h+/A anchored\n",
      RegexpDialect::kPcre);
  EXPECT_EQ(get(*t, "a\nb"), "<none>");
  EXPECT_EQ(get(*t, "c\nd"), "dotall");
  EXPECT_EQ(get(*t, "123x"), "digits-123");
  EXPECT_EQ(get(*t, "e"), "sensitive-");
  EXPECT_EQ(get(*t, "E"), "<none>");
  EXPECT_EQ(get(*t, "hhz"), "anchored");
  EXPECT_EQ(get(*t, "zhh"), "<none>");
  EXPECT_EQ(diagsOf("/(a)\\1/ x\n", RegexpDialect::kPcre),
            "t:1:5: invalid regular expression: back-reference \\1 is not supported by RE2\n");
  EXPECT_EQ(diagsOf("/a/x x\n", RegexpDialect::kPcre),
            "t:1:1: flag \"x\" (PCRE extended syntax) is not supported by RE2\n");
}

TEST(RegexpTableTest, Diagnostics) {
  struct Case {
    const char* text;
    const char* expected;
    bool subst;
  } cases[] = {
      {"endif\n", "t:1:1: warning: ignoring ENDIF without matching IF\n", true},
      {"if /a/ junk\nendif x\n",
       "t:1:8: warning: ignoring extra text after IF statement: \"junk\"\n"
       "t:1:8: warning: do not prepend whitespace to statements between IF and ENDIF\n"
       "t:2:7: warning: ignoring extra text after ENDIF\n",
       true},
      {"if /a/\nif /b/\n",
       "t:2:1: warning: IF has no matching ENDIF\nt:1:1: warning: IF has no matching ENDIF\n",
       true},
      {"/a/\n", "t:1:1: warning: no replacement text: using empty string\n", true},
      {"/a/q x\n", "t:1:4: unknown regexp option \"q\"\n", true},
      {"/abc x\n", "t:1:1: no closing regexp delimiter \"/\"\n", true},
      {"!! \n", "t:1:3: no regexp\n", true},
      {"/(a)/ $2\n", "t:1:7: out of range replacement index \"2\": the pattern has 1 group\n",
       true},
      {"!/(a)/ $1\n", "t:1:8: $number found in negative match replacement text\n", true},
      {"/(a)/ $1\n", "t:1:7: regular expression substitution is not allowed in this table\n",
       false},
      {"/(a)/ $$ only\n", "", false},
      {"/a/ x$\n", "t:1:6: bad replacement syntax: empty macro name: \"x$\"\n", true},
      {"/a/ ${x}\n", "t:1:5: bad replacement syntax: non-numeric replacement index \"x\"\n", true},
      {"/a/ $0\n", "t:1:5: bad replacement syntax: out-of-range replacement index \"0\"\n", true},
      {"/a/ ${1\n", "t:1:5: bad replacement syntax: unbalanced \"{\"\n", true},
      {"/a(/ x\n", "t:1:1: invalid regular expression /a(/: missing ): a(\n", true},
      {"/a/x x\n",
       "t:1:1: flag \"x\" selects POSIX basic regular expressions, which are not supported: write "
       "the pattern as an extended regular expression\n",
       true},
      {"\n\n  /b\\2/ x\n",
       "t:3:1: warning: logical line must not start with whitespace: \"  /b\\2/ x\"\n", true},
      {"/a/ ok\n/b\\2/ x\n",
       "t:2:3: invalid regular expression: back-reference \\2 is not supported by RE2\n", true},
      {"foo bar\n",
       "t:1:1: unrecognized request (expected /pattern/ result, if /pattern/ or endif)\n", true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(diagsOf(c.text, RegexpDialect::kPosix, c.subst), c.expected) << c.text;
  }
}

TEST(RegexpTableTest, OriginOffsetsLinesAndColumns) {
  Diagnostics d;
  RegexpTable::parse("/a/ ok\n/a(/ x\n", {"relaykit.yaml", 10, 9}, {RegexpDialect::kPosix, true},
                     &d);
  EXPECT_EQ(d.formatAll(), "relaykit.yaml:11:1: invalid regular expression /a(/: missing ): a(\n");
  Diagnostics d2;
  RegexpTable::parse("/a(/ x\n", {"relaykit.yaml", 10, 9}, {RegexpDialect::kPosix, true}, &d2);
  EXPECT_EQ(d2.formatAll(), "relaykit.yaml:10:9: invalid regular expression /a(/: missing ): a(\n");
}

TEST(RegexpTableTest, MatchReportsRuleLocation) {
  auto t = parseOk("/a/ one\n\n/b/ two\n");
  auto m = t->match("b");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->where.line, 3);
  EXPECT_EQ(m->where.file, "t");
  EXPECT_EQ(m->resultWhere.column, 5);
  auto rules = t->rules();
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0].resultText, "one");
  EXPECT_EQ(rules[1].where.line, 3);
  EXPECT_EQ(rules[1].resultWhere.line, 3);
  EXPECT_EQ(rules[1].resultWhere.column, 5);
  auto cont = parseOk("/a/\n  REPLACE x $$\n");
  EXPECT_EQ(cont->rules()[0].resultText, "REPLACE x $$");
  EXPECT_EQ(cont->rules()[0].resultWhere.line, 2);
  EXPECT_EQ(cont->rules()[0].resultWhere.column, 3);
}

TEST(RegexpTableTest, ManyRulesFirstInFileOrder) {
  std::string text;
  for (int i = 0; i < 2000; ++i) {
    text += "/^user" + std::to_string(i) + "@/ r" + std::to_string(i) + "\n";
  }
  text += "/^user1/ catchall\n";
  auto t = parseOk(text);
  EXPECT_EQ(get(*t, "user1999@x"), "r1999");
  EXPECT_EQ(get(*t, "user1@x"), "r1");
  EXPECT_EQ(get(*t, "user19999@x"), "catchall");
  EXPECT_EQ(get(*t, "nobody@x"), "<none>");
}

// 30 random tables of `atoms` in `dialect`, 200 random keys of `keyChars` each: the RE2::Set
// path (with the prefilter when it applies) and the rule-by-rule path must agree.
void expectSetAndLinearAgree(std::mt19937& rng, const char* const* atoms, int natoms,
                             RegexpDialect dialect, const std::string& keyChars) {
  for (int round = 0; round < 30; ++round) {
    std::string text = randomRegexpTable(rng, atoms, natoms, false);
    Diagnostics d;
    auto t = RegexpTable::parse(text, {"t", 1, 0}, {dialect, true}, &d);
    ASSERT_NE(t, nullptr) << d.formatAll();
    for (int k = 0; k < 200; ++k) {
      std::string key;
      const int len = static_cast<int>(rng() % 6);
      for (int j = 0; j < len; ++j) {
        key.push_back(keyChars[rng() % keyChars.size()]);
      }
      auto fast = t->match(key);
      auto slow = t->matchLinear(key);
      ASSERT_EQ(fast.has_value(), slow.has_value()) << text << "key=" << key;
      if (fast) {
        ASSERT_EQ(fast->value, slow->value) << text << "key=" << key;
      }
    }
  }
}

// Random tables mixing if/endif, negation and second patterns.
TEST(RegexpTableTest, SetAndLinearAgreeOnRandomTables) {
  std::mt19937 rng(12345);
  const char* atoms[] = {"a", "b", "ab", "^a", "b$", "[ab]c", "c+", "(a|b)c", "x", "^$", "."};
  expectSetAndLinearAgree(rng, atoms, sizeof(atoms) / sizeof(atoms[0]), RegexpDialect::kPosix,
                          "abcxAB");
}

// answerPrefixes(): the literals one of which every answered key starts with, only when the
// table proves them (anchored patterns, no negated rule answering keys no pattern matches).
TEST(RegexpTableTest, AnswerPrefixesOnlyWhenProven) {
  auto anchored = parseOk("/^X-Originating-IP:/ IGNORE\n/^Subject:.*spam/ WARN spam\n");
  auto prefixes = anchored->answerPrefixes();
  ASSERT_TRUE(prefixes);
  std::vector<std::string> texts;
  for (const LiteralPrefix& p : *prefixes) {
    texts.push_back(p.text);
    EXPECT_TRUE(p.foldCase);  // POSIX tables fold case by default
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"X-Originating-IP:", "Subject:"}));
  EXPECT_FALSE(parseOk("/^X-A:/ a\n/b/ b\n")->answerPrefixes());  // one unanchored pattern
  EXPECT_FALSE(parseOk("!/^X-A:/ not-a\n")->answerPrefixes());    // answers any other key
  EXPECT_FALSE(parseOk("/^Subject:/m s\n")->answerPrefixes());    // `^` after any newline
}

// The prefilter (every pattern anchored on a literal) keeps Postfix's answers: negated rules and
// negated IFs match keys no pattern matches, case folding follows the flags, `m` lets `^` match
// after a newline of a folded header, and the Set and rule-by-rule paths agree.
TEST(RegexpTableTest, AnchoredTablesKeepTheirAnswers) {
  auto t = parseOk(
      "/^Subject:/ subject\n"
      "/^X-Spam:/i spam-cs\n"
      "if !/^Received:/\n"
      "!/^From:/ not-from\n"
      "endif\n");
  EXPECT_EQ(get(*t, "Subject: a"), "subject");
  EXPECT_EQ(get(*t, "subject: a"), "subject");  // POSIX tables fold case by default
  EXPECT_EQ(get(*t, "SUBJECT: a"), "subject");
  EXPECT_EQ(get(*t, "X-Spam: yes"), "spam-cs");
  EXPECT_EQ(get(*t, "x-spam: yes"), "not-from");  // the `i` flag makes it case-sensitive
  EXPECT_EQ(get(*t, "Received: from x"), "<none>");
  EXPECT_EQ(get(*t, "From: a@b"), "<none>");
  EXPECT_EQ(get(*t, "To: a@b"), "not-from");
  EXPECT_EQ(get(*t, ""), "not-from");
  EXPECT_EQ(get(*t, "X-Foo: a\n\tSubject: b"), "not-from");

  auto m = parseOk("/^Subject:/m subject\n");
  EXPECT_EQ(get(*m, "X-Foo: a\nSubject: b"), "subject");
  EXPECT_EQ(get(*m, "X-Foo: a"), "<none>");

  auto pcre = parseOk(
      "/^Subject:/ folded\n"
      "/^Kind:/i exact\n",
      RegexpDialect::kPcre);
  EXPECT_EQ(get(*pcre, "subject: x"), "folded");
  EXPECT_EQ(get(*pcre, "\xe2\x84\xaaind: x"), "<none>");
  EXPECT_EQ(get(*pcre, "Kind: x"), "exact");
  EXPECT_EQ(get(*pcre, "kind: x"), "<none>");

  // PCRE tables run in RE2's UTF-8 mode: /^Kind:/ (case-insensitive) matches U+212A KELVIN SIGN.
  auto kelvin = parseOk("/^Kind:/ kind\n/^Date:/ date\n", RegexpDialect::kPcre);
  EXPECT_EQ(get(*kelvin, "\xe2\x84\xaaind: x"), "kind");
  EXPECT_EQ(get(*kelvin, "KIND: x"), "kind");
  EXPECT_EQ(get(*kelvin, "Dkind: x"), "<none>");
}

// Random tables whose every pattern is anchored on a literal (so the prefilter is on): the
// prefiltered Set path and the rule-by-rule path must agree, in both dialects.
TEST(RegexpTableTest, PrefilteredAndLinearAgreeOnRandomTables) {
  std::mt19937 rng(4242);
  const char* atoms[] = {"^a",  "^ab",   "^A:",  "^ab?",  "^a+b",
                         "^b:", "^a{2}", "^ab$", "^b.*a", "^ba:c"};
  const int natoms = sizeof(atoms) / sizeof(atoms[0]);
  expectSetAndLinearAgree(rng, atoms, natoms, RegexpDialect::kPosix, "abcAB:\n");
  expectSetAndLinearAgree(rng, atoms, natoms, RegexpDialect::kPcre, "abcAB:\n");
}

TEST(RegexpTableTest, ConcurrentLookups) {
  std::string text;
  for (int i = 0; i < 500; ++i) {
    text += "/^u" + std::to_string(i) + "@(.*)$/ r" + std::to_string(i) + "-$1\n";
  }
  auto t = parseOk(text);
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int n = 0; n < 4; ++n) {
    threads.emplace_back([&, n] {
      for (int i = 0; i < 2000; ++i) {
        const int r = (i * 7 + n) % 500;
        auto m = t->match("u" + std::to_string(r) + "@d" + std::to_string(n));
        if (!m || m->value != "r" + std::to_string(r) + "-d" + std::to_string(n)) {
          ++failures[n];
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// milter_config_test.cc: the `milter:` section at load: every problem reported with its
// location, `with:` group references, max_sessions, header_checks from a file, if/endif keywords,
// and the protocol steps a configuration needs.
#include "milters/milter_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/unit/milter/rewrite_fixture.h"

namespace relaykit::milter {
namespace {

TEST(MilterConfigTest, HeaderChecksKeywordsAreCaseInsensitiveWhenActionsAreChecked) {
  // "If" and "ENDIF" are keywords in any case (dict_regexp.c); their patterns are not actions.
  auto mc = load(R"(
  header_checks: |
    If /^X-I/
    /^X-Id:/   IGNORE
    ENDIF
    IF !/^X-I/
    /^X-J:/    IGNORE
    Endif
)");
  ASSERT_TRUE(mc);
  std::vector<HeaderField> in = {{"X-Id", " 1"}, {"X-J", " 2"}, {"X-K", " 3"}};
  EXPECT_EQ(render(rewriteMessage(*mc, env(), in).headers), "X-K: 3\n");
}

TEST(MilterConfigTest, ReportsEveryProblemWithLocation) {
  std::string errors;
  auto mc = load(R"(
  on_error: maybe
  header_checks: |
    /^X-A:/   REJECT no
    /^X-B:/   FROB
    /^X-C:/   IGNORE
  header_rules:
    - match: '('
      action: remove
    - match: '^X:'
      action: explode
    - match: '^X:'
      action: replace
    - match: '^X:'
      action: remove
      when: {client: [not-a-net], colour: red}
  rewrite_from:
    table: nosuch
  bogus: 1
)",
                 &errors);
  EXPECT_FALSE(mc);
  for (const char* expected :
       {"on_error must be tempfail or accept", "test.yaml:27:15: header_checks: action \"REJECT\"",
        "\"REJECT\" is not supported", "unknown header_checks action \"FROB\"",
        "invalid regular expression", "unknown action \"explode\"", "needs `with:`",
        "unknown key \"colour\"", "unknown table \"nosuch\"", "unknown key \"bogus\""}) {
    EXPECT_NE(errors.find(expected), std::string::npos) << expected << "\n" << errors;
  }
}

TEST(MilterConfigTest, WithGroupReferencesAreCompiledAndCheckedAtLoad) {
  std::string errors;
  auto bad = load(R"(
  header_rules:
    - match: '^X-A: (.*)'
      action: replace
      with: 'X-A: $99999999999'
    - match: '^X-B: (a)(b)'
      action: warn
      with: 'saw ${3}'
    - match: '^X-C: c'
      action: info
      with: 'saw $(1)'
)",
                  &errors);
  EXPECT_FALSE(bad);
  EXPECT_NE(errors.find("test.yaml:28:13: $99999999999 refers to group 99999999999 but the "
                        "pattern has only 1 group"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("test.yaml:31:13: ${3} refers to group 3 but the pattern has only 2 "
                        "groups"),
            std::string::npos)
      << errors;
  EXPECT_NE(errors.find("test.yaml:34:13: $(1) refers to group 1 but the pattern has no groups"),
            std::string::npos)
      << errors;

  auto mc = load(R"(
  header_rules:
    - match: '^X-A: (\w+) (\w+)'
      action: replace
      with: 'X-A: ${2}-$1 $$ $0 $x ${1'
)");
  ASSERT_TRUE(mc);
  RewriteOutcome out = rewriteMessage(*mc, env(), {{"X-A", " one two"}});
  EXPECT_EQ(render(out.headers), "X-A: two-one $ X-A: one two $x ${1\n");
}

TEST(MilterConfigTest, MaxSessions) {
  auto mc = load("  max_sessions: 8\n");
  ASSERT_TRUE(mc);
  EXPECT_EQ(mc->maxSessions, 8);
  EXPECT_EQ(load("  on_error: accept\n")->maxSessions, kDefaultMilterSessions);
  const std::pair<const char*, const char*> bad[] = {
      {"0", "value 0 out of range (1..65536)"},
      {"-3", "value -3 out of range (1..65536)"},
      {"many", "expected an integer, got \"many\""},
      {"65537", "value 65537 out of range (1..65536)"}};
  for (const auto& [value, message] : bad) {
    std::string errors;
    EXPECT_FALSE(load(std::string("  max_sessions: ") + value + "\n", &errors)) << value;
    EXPECT_NE(errors.find(message), std::string::npos) << errors;
  }
}

TEST(MilterConfigTest, HeaderChecksFromAFile) {
  std::string path = ::testing::TempDir() + "/relaykit_header_checks";
  {
    std::ofstream out(path);
    out << "# from a file\n/^X-Drop:/ IGNORE\n/^X-Bad:/ FROB\n";
  }
  std::string errors;
  auto bad = load("  header_checks_file: regexp:" + path + "\n", &errors);
  EXPECT_FALSE(bad);
  EXPECT_NE(errors.find(path + ":3:"), std::string::npos) << errors;
  {
    std::ofstream out(path);
    out << "/^X-Drop:/ IGNORE\n";
  }
  auto mc = load("  header_checks_file: " + path + "\n");
  ASSERT_TRUE(mc);
  RewriteOutcome out = rewriteMessage(*mc, env(), {{"X-Drop", " 1"}, {"X-Keep", " 2"}});
  EXPECT_EQ(render(out.headers), "X-Keep: 2\n");
  auto missing = load("  header_checks_file: /nonexistent/hc\n", &errors);
  EXPECT_FALSE(missing);
  EXPECT_NE(errors.find("cannot read header_checks_file /nonexistent/hc"), std::string::npos);
}

TEST(MilterConfigTest, NegotiationNeeds) {
  auto plain = load("  rewrite_sender: {table: canonical}\n");
  EXPECT_FALSE(plain->needsHeaders());
  EXPECT_FALSE(plain->needsRecipients());
  auto rcpt = load(R"(
  header_rules:
    - match: '^X:'
      action: remove
      when: {not: {recipient: 'x'}}
)");
  EXPECT_TRUE(rcpt->needsHeaders());
  EXPECT_TRUE(rcpt->needsRecipients());
  EXPECT_FALSE(rcpt->needsHelo());
}

}  // namespace
}  // namespace relaykit::milter

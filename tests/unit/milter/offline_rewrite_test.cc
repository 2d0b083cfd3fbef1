// SPDX-License-Identifier: Apache-2.0
// offline_rewrite_test.cc: `relaykit rewrite`'s engine: message splitting as Postfix takes in a
// file (line ends, mbox From line, NUL, CR, header_size_limit, no body, no final newline; the
// cases tests/e2e/explore_rewrite_offline.py found against Postfix), rendering, header diff and
// its bounds, and the seeds' rules on a whole message (the demo's before/after).
#include "milters/offline_rewrite.h"

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "common/config.h"
#include "milters/edit_plan.h"

namespace relaykit::milter {
namespace {

using std::string_literals::operator""s;

std::shared_ptr<const MilterConfig> loadMilter(const std::string& milter) {
  Diagnostics diags;
  auto config = loadConfigText("milter:\n" + milter, "test.yaml", &diags);
  std::shared_ptr<const MilterConfig> mc = config ? parseMilterConfig(config, &diags) : nullptr;
  EXPECT_TRUE(mc) << diags.formatAll();
  return mc;
}

std::string rewritten(const MilterConfig& mc, std::string_view message) {
  Envelope env;
  env.sender = "s@corp.com";
  env.recipients = {"r@example.com"};
  return rewriteOffline(mc, env, message).message;
}

TEST(OfflineRewriteTest, SplitKeepsFoldingAndLeadingSpace) {
  ParsedMessage m = splitMessage("A: 1\r\nB:2\r\n\tcont\r\n\r\nbody\r\nline\r\n");
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.headers[0].value, " 1");
  EXPECT_EQ(m.headers[1].value, "2\n\tcont");
  EXPECT_EQ(m.body, "body\nline\n");
  EXPECT_EQ(renderMessage(m.headers, m.body), "A: 1\nB:2\n\tcont\n\nbody\nline\n");
}

TEST(OfflineRewriteTest, BodyStartsAtFirstNonHeaderLine) {
  ParsedMessage m = splitMessage("A: 1\nnot a header\nmore\n");
  ASSERT_EQ(m.headers.size(), 1u);
  EXPECT_EQ(m.body, "not a header\nmore\n");
}

// Postfix's intake of the same file through sendmail(1), as measured (explore_rewrite_offline.py).
TEST(OfflineRewriteTest, LineEndsAsPostfixStoresThem) {
  // Mixed line ends; every CR before the LF goes, any other CR becomes a space.
  ParsedMessage m = splitMessage("A: 1\r\nB: x\ry\r\r\n\tc\rd\n\r\nbody\rcr\r\nlast\n");
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.headers[1].value, " x y\n\tc d");
  EXPECT_EQ(m.body, "body cr\nlast\n");
  EXPECT_TRUE(m.separator);
}

TEST(OfflineRewriteTest, MboxFromLineSkippedAsSendmailDoes) {
  ParsedMessage m = splitMessage("From s@corp.com  Mon Jan  1 00:00:00 2024\nA: 1\n\nbody\n");
  ASSERT_EQ(m.headers.size(), 1u);
  EXPECT_EQ(m.headers[0].name, "A");
  EXPECT_EQ(m.body, "body\n");
  // Only a first line: later, it is body text (or ends the headers).
  m = splitMessage("A: 1\nFrom x\n");
  ASSERT_EQ(m.headers.size(), 1u);
  EXPECT_EQ(m.body, "From x\n");
}

TEST(OfflineRewriteTest, MissingFinalNewlineIsSupplied) {
  ParsedMessage m = splitMessage("A: 1\n\nbody");
  EXPECT_EQ(renderMessage(m.headers, m.body, m.separator), "A: 1\n\nbody\n");
  m = splitMessage("A: 1\nB: 2");
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.headers[1].value, " 2");
  EXPECT_EQ(renderMessage(m.headers, m.body, m.separator), "A: 1\nB: 2\n");
}

TEST(OfflineRewriteTest, HeaderBlockOnlyHasNoEmptyLine) {
  // Postfix writes no empty line after a header block that ends the file.
  ParsedMessage m = splitMessage("A: 1\nB: 2\n");
  EXPECT_FALSE(m.separator);
  EXPECT_EQ(renderMessage(m.headers, m.body, m.separator), "A: 1\nB: 2\n");
  m = splitMessage("A: 1\n\n");  // an empty line and no body: kept
  EXPECT_TRUE(m.separator);
  EXPECT_EQ(renderMessage(m.headers, m.body, m.separator), "A: 1\n\n");
  m = splitMessage("");
  EXPECT_TRUE(m.headers.empty());
  EXPECT_EQ(renderMessage(m.headers, m.body, m.separator), "");
  ASSERT_EQ(m.notes.size(), 1u);
  EXPECT_EQ(m.notes[0], "empty message");
}

TEST(OfflineRewriteTest, NonHeaderLineStartsBodyAfterAnEmptyLine) {
  ParsedMessage m = splitMessage(" leading continuation\nA: 1\n");
  EXPECT_TRUE(m.headers.empty());
  EXPECT_EQ(renderMessage(m.headers, m.body, m.separator), "\n leading continuation\nA: 1\n");
}

TEST(OfflineRewriteTest, SpaceBeforeColonIsDropped) {
  // cleanup(8) stores the obsolete "Name : value" as "Name: value"; header_checks see that.
  ParsedMessage m = splitMessage("X-Spaced \t: v\nX-B  :w\n\n");
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.headers[0].name, "X-Spaced");
  EXPECT_EQ(m.headers[0].value, " v");
  EXPECT_EQ(m.headers[1].name, "X-B");
  EXPECT_EQ(m.headers[1].value, "w");
}

TEST(OfflineRewriteTest, NulEndsAHeaderLineButNotABodyLine) {
  std::string text = "X-Nul: a\0b\n\tc\0d\n\nbody\0nul\n"s;
  ParsedMessage m = splitMessage(text);
  ASSERT_EQ(m.headers.size(), 1u);
  EXPECT_EQ(m.headers[0].value, " a\n\tc");
  EXPECT_EQ(m.body, "body\0nul\n"s);
  // A line that starts with NUL is empty to cleanup: it ends the headers in place of the
  // empty line.
  m = splitMessage("A: 1\n\0x\nbody\n"s);
  ASSERT_EQ(m.headers.size(), 1u);
  EXPECT_FALSE(m.separator);
  EXPECT_EQ(m.body, "\0x\nbody\n"s);
}

TEST(OfflineRewriteTest, HeaderCutAtHeaderSizeLimit) {
  // One long line: pieces of line_length_limit bytes are kept while the header is shorter
  // than header_size_limit, then cleanup_out_header cuts it at the limit exactly.
  std::string longValue(110000, 'y');
  ParsedMessage m = splitMessage("X-Long: " + longValue + "\nB: 2\n\n");
  ASSERT_EQ(m.headers.size(), 2u);
  EXPECT_EQ(m.headers[0].name.size() + 1 + m.headers[0].value.size(), kHeaderSizeLimit);
  ASSERT_FALSE(m.notes.empty());
  EXPECT_NE(m.notes[0].find("header X-Long cut at header_size_limit"), std::string::npos);
  // Folded: cut at the last line boundary when that keeps more than 90% of the limit.
  std::string folded = "X-F: start";
  std::string line = "\t" + std::string(998, 'z');
  while (folded.size() < kHeaderSizeLimit + 5000) {
    folded += "\n" + line;
  }
  m = splitMessage(folded + "\n\nbody\n");
  ASSERT_EQ(m.headers.size(), 1u);
  std::string stored = m.headers[0].name + ":" + m.headers[0].value;
  EXPECT_LE(stored.size(), kHeaderSizeLimit);
  EXPECT_GT(stored.size(), kHeaderSizeLimit * 9 / 10);
  EXPECT_EQ(stored.size() % (line.size() + 1), std::string("X-F: start").size());
  EXPECT_EQ(m.body, "body\n");
}

TEST(OfflineRewriteTest, ContinuationWithoutBlankGetsATab) {
  // A REPLACE whose $1 ends in the header's newline: cleanup_out_header writes "\t" before a
  // continuation line that does not start with a blank, so the empty line does not end the
  // headers.
  auto mc = loadMilter("  header_checks: |\n    /^To: ([^ ]+)/ PREPEND X-Copy: $1\n");
  ASSERT_TRUE(mc);
  EXPECT_EQ(rewritten(*mc, "To: [192.0.2.7]\r\n next\r\nB: 2\r\n\r\nbody\r\n"),
            "X-Copy: [192.0.2.7]\n\t\nTo: [192.0.2.7]\n next\nB: 2\n\nbody\n");
}

TEST(OfflineRewriteTest, DroppedHeadersNeverReachTheMilter) {
  // cleanup drops message_drop_headers before any milter: header_checks do not see them, the
  // output lacks them, the diff and a note say so.
  auto mc = loadMilter("  header_checks: |\n    /^Return-Path:/ REPLACE X-Seen: yes\n");
  ASSERT_TRUE(mc);
  Envelope env;
  OfflineReport r = rewriteOffline(
      *mc, env, "Return-Path: <a@b>\nContent-Length: 5\nbcc: x@y\nResent-Bcc: z\nA: 1\n\nb\n");
  EXPECT_EQ(r.message, "A: 1\n\nb\n");
  EXPECT_NE(r.diff.find("-Return-Path: <a@b>\n"), std::string::npos);
  EXPECT_NE(r.diff.find("-bcc: x@y\n"), std::string::npos);
  ASSERT_GE(r.outcome.notes.size(), 4u);
  EXPECT_NE(r.outcome.notes[0].find("header Return-Path dropped by Postfix's cleanup"),
            std::string::npos);
  EXPECT_TRUE(r.logLine.empty());
}

TEST(OfflineRewriteTest, PastTheMilterBoundsTheMessagePassesUnchanged) {
  auto mc = loadMilter("  header_checks: |\n    /^X-A:/ IGNORE\n");
  ASSERT_TRUE(mc);
  std::string text;
  for (size_t i = 0; i <= kMaxMessageHeaders; ++i) {
    text += "X-A: 1\n";
  }
  Envelope env;
  OfflineReport r = rewriteOffline(*mc, env, text + "\nbody\n");
  EXPECT_EQ(r.message, text + "\nbody\n");
  EXPECT_TRUE(r.logLine.empty());
  ASSERT_FALSE(r.outcome.notes.empty());
  EXPECT_NE(r.outcome.notes.back().find("passes the message unchanged"), std::string::npos);
}

TEST(OfflineRewriteTest, LargePlansUseTheEnginesFinalHeaders) {
  // Past kMaxPlanSimulation the engine's final list stands in for applyEditPlan(): the same.
  auto mc =
      loadMilter("  header_checks: |\n    /^X-A:/ IGNORE\n    /^X-B: (.*)/ REPLACE X-C: $1\n");
  ASSERT_TRUE(mc);
  std::vector<HeaderField> headers;
  for (int i = 0; i < 3000; ++i) {
    headers.push_back({i % 3 == 0 ? "X-A" : i % 3 == 1 ? "X-B" : "X-K", " " + std::to_string(i)});
  }
  Envelope env;
  RewriteOutcome outcome = rewriteMessage(*mc, env, headers);
  std::vector<HeaderField> simulated = applyEditPlan(headers, outcome.plan);
  ASSERT_EQ(simulated.size(), outcome.headers.size());
  for (size_t i = 0; i < simulated.size(); ++i) {
    EXPECT_EQ(simulated[i].name + ":" + simulated[i].value,
              outcome.headers[i].name + ":" + outcome.headers[i].value);
  }
}

TEST(OfflineRewriteTest, DiffStaysBoundedOnHugeHeaderBlocks) {
  std::vector<HeaderField> before;
  std::vector<HeaderField> after;
  for (int i = 0; i < 6000; ++i) {
    before.push_back({"X-A", " " + std::to_string(i)});
    if (i % 2) {
      after.push_back({"X-A", " " + std::to_string(i)});
    }
  }
  before.push_back({"Z", " end"});
  after.push_back({"Z", " end"});
  std::string d = diffHeaders(before, after);  // 6000 x 3000 cells: past kMaxDiffCells
  EXPECT_EQ(d.rfind("-X-A: 0\n", 0), 0u);
  EXPECT_NE(d.find("+X-A: 1\n"), std::string::npos);
  EXPECT_EQ(d.substr(d.size() - 8), " Z: end\n");
}

TEST(OfflineRewriteTest, DiffMarksRemovedAndAdded) {
  std::vector<HeaderField> before = {{"A", " 1"}, {"B", " 2"}, {"C", " 3"}};
  std::vector<HeaderField> after = {{"A", " 1"}, {"B", " two"}, {"C", " 3"}, {"D", " 4"}};
  EXPECT_EQ(diffHeaders(before, after), " A: 1\n-B: 2\n+B: two\n C: 3\n+D: 4\n");
}

TEST(OfflineRewriteTest, SeedRulesOnTheDemoMessage) {
  Diagnostics diags;
  auto config = loadConfig(std::string(RELAYKIT_SOURCE_DIR) + "/conf/relaykit.yaml", &diags);
  ASSERT_TRUE(config) << diags.formatAll();
  auto mc = parseMilterConfig(config, &diags);
  ASSERT_TRUE(mc) << diags.formatAll();
  Envelope env;
  env.sender = "root@relay.corp.local";
  env.recipients = {"ops@example.com"};
  env.queueId = "4Bx2Yz";
  std::string msg =
      "Received: from app (localhost [127.0.0.1]) by srv1.corp.local\n"
      "X-Originating-IP: 10.1.2.3\n"
      "From: Root <root@relay.corp.local>\n"
      "To: ops@example.com\n"
      "Subject: disk full\n"
      "\n"
      "body\n";
  OfflineReport r = rewriteOffline(*mc, env, msg);
  ASSERT_FALSE(r.outcome.error);
  EXPECT_EQ(r.message,
            "From: Root <noreply@corp.com>\nTo: ops@example.com\nSubject: disk full\n\nbody\n");
  EXPECT_EQ(r.newSender, "noreply@corp.com");
  EXPECT_EQ(r.logLine,
            "4Bx2Yz: from=<root@relay.corp.local> -> <noreply@corp.com>, header Received removed, "
            "header X-Originating-IP removed, header From <root@relay.corp.local> -> "
            "<noreply@corp.com>");
  EXPECT_NE(r.diff.find("-MAIL FROM:<root@relay.corp.local>\n+MAIL FROM:<noreply@corp.com>\n"),
            std::string::npos);
  EXPECT_NE(r.diff.find("-X-Originating-IP: 10.1.2.3\n"), std::string::npos);
  EXPECT_NE(r.diff.find("+From: Root <noreply@corp.com>\n"), std::string::npos);
}

}  // namespace
}  // namespace relaykit::milter

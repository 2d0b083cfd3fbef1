// offline_rewrite_test.cc: `relaykit rewrite`'s engine: message splitting, rendering, header
// diff, and the seeds' rules on a whole message (the demo's before/after).
#include "milters/offline_rewrite.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/config.h"

namespace relaykit::milter {
namespace {

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

// SPDX-License-Identifier: Apache-2.0
// message_rewriter_test.cc: the rule engine end to end on plain structs: header_checks actions,
// if/endif and $n, header_rules conditions, rewrite_from and rewrite_sender semantics, how table
// results are read, log lines. The per-snapshot memos are address_memo_test.cc; the milter
// section's own checks at load are milter_config_test.cc.
#include "milters/message_rewriter.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/unit/milter/rewrite_fixture.h"

namespace relaykit::milter {
namespace {

// The headers rewriteMessage produces, rendered; checks on the way that replaying its edit plan
// on the input (what the milter sends Postfix) gives the same headers.
std::string rewriteAndReplay(const MilterConfig& mc, const std::vector<HeaderField>& in) {
  RewriteOutcome out = rewriteMessage(mc, env(), in);
  EXPECT_EQ(render(applyEditPlan(in, out.plan)), render(out.headers));
  return render(out.headers);
}

TEST(MessageRewriterTest, HeaderChecksActions) {
  auto mc = load(R"(
  header_checks: |
    /^X-Originating-IP:/   IGNORE
    /^X-Mailer: (.*)/      REPLACE X-Mailer: relaykit (was $1)
    /^Subject:/            PREPEND X-Subject-Seen: yes
    /^X-Warn:/             WARN suspicious
    /^X-Info:/             INFO just so you know
    /^X-Keep:/             DUNNO
    if /^X-Block:/
    /secret/               IGNORE
    endif
)");
  ASSERT_TRUE(mc);
  std::vector<HeaderField> in = {{"X-Originating-IP", " 1.2.3.4"},
                                 {"X-Mailer", " mutt"},
                                 {"Subject", " hi"},
                                 {"X-Warn", " w"},
                                 {"X-Info", " i"},
                                 {"X-Keep", " k"},
                                 {"X-Block", " secret"},
                                 {"X-Block", " open"}};
  RewriteOutcome out = rewriteMessage(*mc, env(), in);
  ASSERT_FALSE(out.error);
  EXPECT_EQ(render(out.headers),
            "X-Mailer: relaykit (was mutt)\nX-Subject-Seen: yes\nSubject: hi\nX-Warn: w\n"
            "X-Info: i\nX-Keep: k\nX-Block: open\n");
  ASSERT_EQ(out.notes.size(), 2u);
  EXPECT_NE(out.notes[0].find("warning: header X-Warn: w"), std::string::npos);
  EXPECT_NE(out.notes[0].find(": suspicious"), std::string::npos);
  EXPECT_EQ(out.notes[1].rfind("info: header X-Info", 0), 0u);
  EXPECT_EQ(applyEditPlan(in, out.plan).size(), out.headers.size());
  EXPECT_EQ(render(applyEditPlan(in, out.plan)), render(out.headers));
}

TEST(MessageRewriterTest, HeaderChecksSeeFoldedHeaderWithNewlines) {
  auto mc = load(R"(
  header_checks: |
    /^Received:.*localhost/   IGNORE
)");
  std::vector<HeaderField> in = {{"Received", " from a\n\tby localhost"}, {"Received", " from b"}};
  RewriteOutcome out = rewriteMessage(*mc, env(), in);
  EXPECT_EQ(render(out.headers), "Received: from b\n");
}

TEST(MessageRewriterTest, HeaderRulesSeeUnfoldedAndDecodedText) {
  auto mc = load(R"(
  header_rules:
    - match: '^Subject: Hello World$'
      action: replace
      with: 'Subject: unfolded'
    - match: '^X-Name: Jörg$'
      decode: true
      action: remove
)");
  std::vector<HeaderField> in = {{"Subject", " Hello\n World"},
                                 {"X-Name", " =?ISO-8859-1?Q?J=F6rg?="}};
  RewriteOutcome out = rewriteMessage(*mc, env(), in);
  EXPECT_EQ(render(out.headers), "Subject: unfolded\n");
}

// Rules anchored on a header name skip headers that do not start with it; which headers they
// match stays RE2's answer: case-insensitive (also U+212A KELVIN SIGN for 'k' in UTF-8 mode),
// (?m) makes `^` match after a newline (none left in the unfolded text rules see), an unanchored
// rule sees every header.
TEST(MessageRewriterTest, AnchoredHeaderRulesMatchAsRe2Does) {
  auto mc = load(R"(
  header_rules:
    - match: '^X-Drop:'
      action: remove
    - match: '^Kind:'
      action: remove
    - match: '(?m)^Inner:'
      action: remove
    - match: '(?-i)^Exact:'
      action: remove
    - match: 'anywhere-marker'
      action: remove
)");
  std::vector<HeaderField> in = {{"X-DROP", " a"},       {"x-drop", " b"},
                                 {"X-Dro", " c"},        {"\xe2\x84\xaaind", " d"},
                                 {"KIND", " e"},         {"X-Outer", " f\n Inner: g"},
                                 {"Outer", " Inner: h"}, {"Exact", " i"},
                                 {"EXACT", " j"},        {"Subject", " has anywhere-marker"}};
  RewriteOutcome out = rewriteMessage(*mc, env(), in);
  EXPECT_EQ(render(out.headers), "X-Dro: c\nX-Outer: f\n Inner: g\nOuter: Inner: h\nEXACT: j\n");
}

// Headers whose name no header_checks line and no rule is anchored on are passed over without
// building their text (HeaderRuleSet's name gate): the same configurations with one unanchored
// rule added (which turns the gate off and matches nothing) decide every header alike.
TEST(MessageRewriterTest, NameGateDecidesAsEveryRuleWould) {
  const std::string gated[] = {
      R"(
  header_checks: |
    /^X-Originating-IP:/  IGNORE
    /^Subject:.*spam/     PREPEND X-Spam: yes
  header_rules:
    - match: '^Received:.*\blocalhost\b'
      action: remove
    - match: '^From:.*<.*@localhost>$'
      action: replace
      with: 'From: "Server" <noreply@corp.com>'
    - match: '^X-Drop:'
      action: remove
)",
      R"(
  header_checks: |
    if !/^X-Keep:/
    /^X-/ IGNORE
    endif
    !/^Subject:/ WARN not a subject
)",
      R"(
  header_rules:
    - match: '^Kind:'
      action: remove
    - match: '^X-Name: J'
      decode: true
      action: remove
)"};
  const char* names[] = {"From",
                         "FROM",
                         "from",
                         "Received",
                         "X-Drop",
                         "X-Dro",
                         "X-Originating-IP",
                         "x-originating-ip",
                         "Subject",
                         "SUBJECT",
                         "To",
                         "From ",
                         "X-Keep",
                         "\xe2\x84\xaaind",
                         "KIND",
                         "X-Name",
                         "Date"};
  const char* values[] = {
      " a@localhost", " <root@localhost>",    " x (localhost)",      " spam here",
      " plain",       " =?utf-8?q?J=C3=B6?=", " a\n b <x@localhost>"};
  std::mt19937 rng(7);
  for (const std::string& config : gated) {
    auto withGate = load(config);
    std::string unanchored =
        config.find("header_rules:") == std::string::npos ? "  header_rules:\n" : "";
    unanchored += "    - match: 'zzz-never-seen'\n      action: remove\n";
    auto withoutGate = load(config + unanchored);
    ASSERT_TRUE(withGate && withoutGate);
    for (int i = 0; i < 300; ++i) {
      std::vector<HeaderField> in;
      const int count = 1 + static_cast<int>(rng() % 6);
      for (int k = 0; k < count; ++k) {
        in.push_back({names[rng() % (sizeof(names) / sizeof(names[0]))],
                      values[rng() % (sizeof(values) / sizeof(values[0]))]});
      }
      const RewriteOutcome a = rewriteMessage(*withGate, env(), in);
      const RewriteOutcome b = rewriteMessage(*withoutGate, env(), in);
      EXPECT_EQ(render(a.headers), render(b.headers)) << config << render(in);
      EXPECT_EQ(a.changes, b.changes) << config << render(in);
      EXPECT_EQ(a.notes, b.notes) << config << render(in);
    }
  }
}

TEST(MessageRewriterTest, ConditionsEachKind) {
  auto mc = load(R"(
  header_rules:
    - match: '^X-S:'
      action: remove
      when: {sender: '@relay\.corp\.local$'}
    - match: '^X-Any:'
      action: remove
      when: {recipient: '@partner\.com$'}
    - match: '^X-All:'
      action: remove
      when: {recipient: {all: '@partner\.com$'}}
    - match: '^X-Net:'
      action: remove
      when: {client: [10.0.0.0/8]}
    - match: '^X-Auth:'
      action: remove
      when: {authenticated: true}
    - match: '^X-NoAuth:'
      action: remove
      when: {authenticated: false}
    - match: '^X-Sasl:'
      action: remove
      when: {sasl_user: '^alice$'}
    - match: '^X-Helo:'
      action: remove
      when: {helo: 'srv'}
    - match: '^X-Not:'
      action: remove
      when: {not: {client: [10.0.0.0/8]}}
)");
  std::vector<HeaderField> in = {{"X-S", " 1"},    {"X-Any", " 1"},  {"X-All", " 1"},
                                 {"X-Net", " 1"},  {"X-Auth", " 1"}, {"X-NoAuth", " 1"},
                                 {"X-Sasl", " 1"}, {"X-Helo", " 1"}, {"X-Not", " 1"}};
  Envelope e = env("root@relay.corp.local");
  e.recipients = {"a@partner.com", "b@corp.com"};
  e.helo = "srv12.corp.local";
  RewriteOutcome out = rewriteMessage(*mc, e, in);
  EXPECT_EQ(render(out.headers), "X-All: 1\nX-Auth: 1\nX-Sasl: 1\nX-Not: 1\n");

  e.sender = "other@corp.com";
  e.recipients = {"a@partner.com"};
  e.saslUser = "alice";
  e.clientAddress = *IpAddress::parse("192.0.2.1");
  e.helo = "mx";
  out = rewriteMessage(*mc, e, in);
  EXPECT_EQ(render(out.headers), "X-S: 1\nX-Net: 1\nX-NoAuth: 1\nX-Helo: 1\n");
}

TEST(MessageRewriterTest, RewriteFromKeepsDisplayNamesAndHandlesSeveralFromHeaders) {
  auto mc = load(R"(
  rewrite_from:
    table: generic
    headers: [From, Reply-To]
)");
  std::vector<HeaderField> in = {
      {"From", " =?UTF-8?Q?J=C3=B6rg?= <root@relay.corp.local>"},
      {"From", " \"Cron, Daemon\" <cron@srv12.corp.local> (cron),\n\tother@example.org"},
      {"Reply-To", " team: nobody@localhost;"},
      {"To", " root@relay.corp.local"},
      {"Sender", " root@relay.corp.local"},
      {"From", " broken <unterminated@x"},
      {"From", " x@olddomain.example"}};
  RewriteOutcome out = rewriteMessage(*mc, env(), in);
  ASSERT_FALSE(out.error);
  EXPECT_EQ(render(out.headers),
            "From: =?UTF-8?Q?J=C3=B6rg?= <noreply@corp.com>\n"
            "From: \"Cron, Daemon\" <cron@corp.com> (cron),\n\tother@example.org\n"
            "Reply-To: team: noreply@corp.com;\n"
            "To: root@relay.corp.local\nSender: root@relay.corp.local\n"
            "From: broken <unterminated@x\n"
            "From: x@newdomain.example\n");
  ASSERT_EQ(out.notes.size(), 1u);
  EXPECT_NE(out.notes[0].find("left unchanged"), std::string::npos);
  EXPECT_EQ(formatRewriteLog("4Bx2Yz", out.changes),
            "4Bx2Yz: header From <root@relay.corp.local> -> <noreply@corp.com>, header From "
            "<cron@srv12.corp.local> -> <cron@corp.com>, header Reply-To <nobody@localhost> -> "
            "<noreply@corp.com>, header From <x@olddomain.example> -> <x@newdomain.example>");
}

TEST(MessageRewriterTest, RewriteFromKeepsAdjacentAddressesApartLikePostfix) {
  // Two addresses with nothing between them (a fuzz finding): Postfix's header rewriting
  // (smtp_generic_maps and canonical_maps on a From header) writes ", " between them; splicing the
  // rewritten addresses in without it glued them into one address.
  auto mc = load(R"(
  rewrite_from:
    table: generic
)");
  std::vector<HeaderField> in = {{"From", " root@relay.corp.local\"x\"@localhost"},
                                 {"From", " <root@relay.corp.local>x@localhost"},
                                 {"From", " John root@relay.corp.local"},
                                 {"From", " John other@example.org"}};
  RewriteOutcome out = rewriteMessage(*mc, env(), in);
  ASSERT_FALSE(out.error);
  EXPECT_EQ(render(out.headers),
            "From: noreply@corp.com, noreply@corp.com\n"
            "From: <noreply@corp.com>, noreply@corp.com\n"
            "From: John, noreply@corp.com\n"
            "From: John other@example.org\n");
}

TEST(MessageRewriterTest, RulesRunBeforeRewriteFrom) {
  auto mc = load(R"(
  header_rules:
    - match: '^From:.*<.*@localhost>$'
      action: replace
      with: 'From: "Server Notifications" <root@relay.corp.local>'
  rewrite_from:
    table: generic
)");
  RewriteOutcome out = rewriteMessage(*mc, env(), {{"From", " Me <me@localhost>"}});
  EXPECT_EQ(render(out.headers), "From: \"Server Notifications\" <noreply@corp.com>\n");
}

TEST(MessageRewriterTest, RewriteSenderCanonicalSemantics) {
  auto mc = load(R"(
  rewrite_sender:
    table: canonical
)");
  Envelope e = env("root@relay.corp.local");
  e.senderArgs = {"SIZE=100", "RET=HDRS", "ENVID=abc", "BODY=8BITMIME"};
  RewriteOutcome out = rewriteMessage(*mc, e, {});
  ASSERT_EQ(out.plan.size(), 1u);
  EXPECT_EQ(out.plan[0].kind, EditOp::Kind::kChangeFrom);
  EXPECT_EQ(out.plan[0].value, "noreply@corp.com");
  EXPECT_EQ(out.plan[0].args, "RET=HDRS ENVID=abc");
  EXPECT_EQ(formatRewriteLog("Q1", out.changes),
            "Q1: from=<root@relay.corp.local> -> <noreply@corp.com>");

  // Repeated while it changes (a -> b -> c), as canonical(5) does.
  out = rewriteMessage(*mc, env("a@x.example"), {});
  ASSERT_EQ(out.plan.size(), 1u);
  EXPECT_EQ(out.plan[0].value, "c@x.example");

  // Null sender and unmatched senders untouched.
  EXPECT_TRUE(rewriteMessage(*mc, env(""), {}).plan.empty());
  EXPECT_TRUE(rewriteMessage(*mc, env("someone@else.example"), {}).plan.empty());

  // Extension propagates (table option).
  out = rewriteMessage(*mc, env("root+tag@relay.corp.local"), {});
  ASSERT_EQ(out.plan.size(), 1u);
  EXPECT_EQ(out.plan[0].value, "noreply+tag@corp.com");
}

TEST(MessageRewriterTest, RewriteSenderSeesTheKeyCleanupWouldLookUp) {
  // Postfix's cleanup rewrites the sender in the local context before canonical(5): trailing dot,
  // source route, pointless quotes, bare localparts (@myorigin = first local domain).
  auto mc = load(R"(
  rewrite_sender:
    table: canonical
)");
  for (const char* sender :
       {"root@relay.corp.local.", "@a.example,@b.example:root@relay.corp.local",
        "\"root\"@relay.corp.local", "root", "\"root\"", "ROOT@Relay.Corp.Local."}) {
    RewriteOutcome out = rewriteMessage(*mc, env(sender), {});
    ASSERT_EQ(out.plan.size(), 1u) << sender;
    EXPECT_EQ(out.plan[0].value, "noreply@corp.com") << sender;
  }
  // Not found after normalisation: nothing changes (Postfix normalises it itself).
  EXPECT_TRUE(rewriteMessage(*mc, env("nobody@relay.corp.local."), {}).plan.empty());
}

TEST(MessageRewriterTest, RewriteFromDropsRouteKeepsInnerCommentsAndSplitsAtLastAt) {
  auto mc = load(R"(
  rewrite_from:
    table: generic
)");
  RewriteOutcome out = rewriteMessage(
      *mc, env(),
      {{"From", " Jo <@a,@b:root(c)@relay.corp.local> (d), x(e)@localhost, a@b@srv1.corp.local"}});
  EXPECT_EQ(render(out.headers),
            "From: Jo <noreply@corp.com (c)> (d), noreply@corp.com (e), \"a@b\"@corp.com\n");
}

// To Postfix a generic(5)/canonical(5) result is an address list (mail_addr_map(3)): each
// address's addr-spec is kept (display name, comments and route dropped), rewritten in the local
// context (a bare localpart gets @myorigin, one trailing dot goes), and the first is used; a
// result that is exactly "<>" is the empty address; one holding no address is a temporary error.
TEST(MessageRewriterTest, TableResultsAreReadAsPostfixReadsThem) {
  Diagnostics diags;
  auto config = loadConfigText(R"yaml(
postfix:
  local_domains: [relay.corp.local, localhost]
tables:
  odd:
    search: address
    sources:
      - entries:
          plain@relay.corp.local: p@corp.com
          display@relay.corp.local: "Display Name <shown@corp.com>"
          multi@relay.corp.local: "first@corp.com, second@corp.com"
          bare@relay.corp.local: justlocal
          route@relay.corp.local: "<@x.example:routed@corp.com> (c)"
          trail@relay.corp.local: t@corp.com.
          quoted@relay.corp.local: '"first last"@corp.com'
          bang@relay.corp.local: host!buser
          atat@relay.corp.local: a@b@corp.com
          dot@relay.corp.local: dot.@corp.com
          empty@relay.corp.local: "<>"
          emptyfirst@relay.corp.local: "<>, later@corp.com"
          nonaddr@relay.corp.local: "(no address)"
milter:
  rewrite_from:
    table: odd
  rewrite_sender:
    table: odd
)yaml",
                               "odd.yaml", &diags);
  ASSERT_TRUE(config) << diags.formatAll();
  auto mc = parseMilterConfig(config, &diags);
  ASSERT_TRUE(mc) << diags.formatAll();
  const std::pair<const char*, const char*> senders[] = {
      {"plain@relay.corp.local", "p@corp.com"},
      {"display@relay.corp.local", "shown@corp.com"},
      {"multi@relay.corp.local", "first@corp.com"},
      {"bare@relay.corp.local", "justlocal@relay.corp.local"},
      {"route@relay.corp.local", "routed@corp.com"},
      {"trail@relay.corp.local", "t@corp.com"},
      {"quoted@relay.corp.local", "\"first last\"@corp.com"},
      {"bang@relay.corp.local", "buser@host"},
      {"atat@relay.corp.local", "\"a@b\"@corp.com"},
      {"dot@relay.corp.local", "\"dot.\"@corp.com"},
      {"empty@relay.corp.local", ""},
      {"emptyfirst@relay.corp.local", "later@corp.com"},
  };
  for (const auto& [sender, want] : senders) {
    RewriteOutcome out = rewriteMessage(*mc, env(sender), {});
    EXPECT_FALSE(out.error) << sender << ": " << out.errorReason;
    ASSERT_EQ(out.plan.size(), 1u) << sender;
    EXPECT_EQ(out.plan[0].kind, EditOp::Kind::kChangeFrom);
    EXPECT_EQ(out.plan[0].value, want) << sender;
  }
  RewriteOutcome out = rewriteMessage(
      *mc, env(),
      {{"From",
        " Ops <display@relay.corp.local>, multi@relay.corp.local, <empty@relay.corp.local>"}});
  EXPECT_EQ(render(out.headers), "From: Ops <shown@corp.com>, first@corp.com, <\"\">\n");

  // Several addresses: the first is used and a note says so (the memo's first mapping only).
  auto fresh = parseMilterConfig(config, &diags);
  ASSERT_TRUE(fresh);
  out = rewriteMessage(*fresh, env("multi@relay.corp.local"), {});
  ASSERT_EQ(out.notes.size(), 1u);
  EXPECT_EQ(out.notes[0],
            "table odd returns 2 addresses for <multi@relay.corp.local>: the first, "
            "<first@corp.com>, is used, as Postfix does");
  EXPECT_TRUE(rewriteMessage(*fresh, env("multi@relay.corp.local"), {}).notes.empty());

  for (int pass = 0; pass < 2; ++pass) {  // an error is not remembered: it fails again
    out = rewriteMessage(*mc, env("nonaddr@relay.corp.local"), {});
    EXPECT_TRUE(out.error);
    EXPECT_NE(out.errorReason.find("non-address result \"(no address)\""), std::string::npos)
        << out.errorReason;
    EXPECT_TRUE(out.plan.empty());
  }
}

class FailingSource : public TableSource {
 public:
  bool isPattern() const override { return false; }
  LookupResult lookup(std::string_view) const override {
    return LookupResult::tempError("store down");
  }
  std::string describe() const override { return "failing"; }
};

std::shared_ptr<const Table> failingTable() {
  std::vector<std::unique_ptr<TableSource>> sources;
  sources.push_back(std::make_unique<FailingSource>());
  TableOptions options;
  options.search = SearchMode::kAddress;
  return std::make_shared<Table>("failing", options, std::move(sources),
                                 std::make_shared<PostfixSettings>());
}

TEST(MessageRewriterTest, TableErrorsChangeNothingAndAreReported) {
  MilterConfig from;
  from.fromTable = failingTable();
  from.fromHeaders = {"From"};
  from.fromMemo = std::make_shared<AddressMemo>();
  from.fromHeaderMemo = std::make_shared<HeaderRewriteMemo>();
  RewriteOutcome out = rewriteMessage(from, env(), {{"X-A", " 1"}, {"From", " a@b"}});
  EXPECT_EQ(from.fromMemo->size() + from.fromHeaderMemo->size(), 0u);
  EXPECT_TRUE(out.error);
  EXPECT_NE(out.errorReason.find("store down"), std::string::npos);
  EXPECT_TRUE(out.plan.empty());

  MilterConfig sender;
  sender.senderTable = failingTable();
  sender.senderMemo = std::make_shared<AddressMemo>();
  for (int pass = 0; pass < 2; ++pass) {  // an error is not remembered: it fails again
    out = rewriteMessage(sender, env("x@y"), {});
    EXPECT_TRUE(out.error);
    EXPECT_TRUE(out.plan.empty());
  }
  EXPECT_EQ(sender.senderMemo->size(), 0u);
  // The null sender is never looked up, so it cannot fail.
  EXPECT_FALSE(rewriteMessage(sender, env(""), {}).error);
}

TEST(MessageRewriterTest, ExpandedResultThatIsNotAnActionIsDunnoWithANote) {
  auto mc = load(R"(
  header_checks: |
    /^X-Act: (.*)/   $1
    /^X-Rep: (.*)/   REPLACE $1
)");
  std::vector<HeaderField> in = {{"X-Act", " IGNORE"}, {"X-Act", " FROB"}, {"X-Rep", " no colon"}};
  RewriteOutcome out = rewriteMessage(*mc, env(), in);
  EXPECT_EQ(render(out.headers), "X-Act: FROB\nX-Rep: no colon\n");
  EXPECT_EQ(out.notes.size(), 2u);
}

TEST(MessageRewriterTest, ReplaceAndPrependAcceptTheObsoleteNameSpaceColonForm) {
  // Postfix's is_header() takes "Name : value" as a header: cleanup writes such REPLACE and
  // PREPEND texts as they are (a milter inserts name "Name " and value " value": same bytes).
  EXPECT_TRUE(isHeaderLine("X-A : v"));
  EXPECT_TRUE(isHeaderLine("X-A\t:v"));
  EXPECT_TRUE(isHeaderLine("X-A:"));
  EXPECT_FALSE(isHeaderLine(" X-A: v"));
  EXPECT_FALSE(isHeaderLine("X A: v"));
  EXPECT_FALSE(isHeaderLine(": v"));
  EXPECT_FALSE(isHeaderLine("X-A v"));
  auto mc = load(R"(
  header_checks: |
    /^X-Old:/   REPLACE X-New : replaced
    /^X-Pre:/   PREPEND X-Added :   added
)");
  ASSERT_TRUE(mc);
  std::vector<HeaderField> in = {{"X-Old", " o"}, {"X-Pre", " p"}};
  EXPECT_EQ(rewriteAndReplay(*mc, in), "X-New : replaced\nX-Added :   added\nX-Pre: p\n");
}

TEST(MessageRewriterTest, ReplaceIntoADroppedHeaderRemovesAsCleanupDoes) {
  // cleanup(8) looks the REPLACE result up in message_drop_headers (bcc, content-length,
  // resent-bcc, return-path) and drops it, except where the original is a MIME header.
  auto mc = load(R"(
  header_checks: |
    /^X-Rp:/      REPLACE Return-Path : <a@b>
    /^X-Bcc:/     REPLACE bcc: hidden
    /^X-Len:/     REPLACE Content-Length: 5
    /^Content-Description:/ REPLACE Bcc: kept
    /^X-Pre:/     PREPEND Bcc: prepended
)");
  ASSERT_TRUE(mc);
  std::vector<HeaderField> in = {{"X-Rp", " 1"},
                                 {"X-Bcc", " 2"},
                                 {"X-Len", " 3"},
                                 {"Content-Description", " 4"},
                                 {"X-Pre", " 5"}};
  EXPECT_EQ(rewriteAndReplay(*mc, in), "Bcc: kept\nBcc: prepended\nX-Pre: 5\n");
}

TEST(MessageRewriterTest, LogLineCountsRepeatedChanges) {
  EXPECT_EQ(formatRewriteLog("Q", {"header X removed", "header Y removed", "header X removed"}),
            "Q: header X removed (x2), header Y removed");
  EXPECT_EQ(formatRewriteLog("Q", {}), "");
  EXPECT_EQ(formatRewriteLog("", {"a"}), "NOQUEUE: a");
  // More changes than are compared pairwise: counted the same way, at the first's place.
  std::vector<std::string> many;
  for (int i = 0; i < 12; ++i) {
    many.push_back("header X-" + std::to_string(i % 5) + " removed");
  }
  EXPECT_EQ(formatRewriteLog("Q", many),
            "Q: header X-0 removed (x3), header X-1 removed (x3), header X-2 removed (x2), "
            "header X-3 removed (x2), header X-4 removed (x2)");
}

// A message may change as many headers as it has (kMaxMessageHeaders): the log line is built in
// time linear in the changes, also when none repeats.
TEST(MessageRewriterTest, LogLineOfManyDistinctChangesIsLinear) {
  std::vector<std::string> changes;
  changes.reserve(kMaxMessageHeaders);
  std::size_t expected = std::string("Q:").size();
  for (std::size_t i = 0; i < kMaxMessageHeaders; ++i) {
    changes.push_back("header X-" + std::to_string(i) + " removed");
    expected += 1 + changes.back().size() + (i > 0 ? 1 : 0);
  }
  changes.push_back(changes.front());
  const std::string line = formatRewriteLog("Q", changes);
  EXPECT_EQ(line.size(), expected + std::string(" (x2)").size());
  EXPECT_EQ(line.substr(0, 27), "Q: header X-0 removed (x2),");
}

}  // namespace
}  // namespace relaykit::milter

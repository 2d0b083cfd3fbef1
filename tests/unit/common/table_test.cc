// SPDX-License-Identifier: Apache-2.0
// table_test.cc: Table::lookup search modes (generic/canonical, transport, sender-dependent
// relayhost), several sources, and the indexed sources (entries, postmap source files).
#include "common/table.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "common/address_search.h"
#include "common/table_file.h"

namespace relaykit {
namespace {

std::shared_ptr<const PostfixSettings> settings(std::string delim = "+", bool pdms = false) {
  auto s = std::make_shared<PostfixSettings>();
  s->localDomains = {"relay.corp.local", "localhost"};
  s->recipientDelimiter = std::move(delim);
  s->parentDomainMatchesSubdomains = pdms;
  return s;
}

std::unique_ptr<TableSource> entries(std::vector<std::pair<std::string, std::string>> kv) {
  std::vector<TableEntry> list;
  int line = 1;
  for (auto& [k, v] : kv) {
    list.push_back(TableEntry{k, v, SourceLocation{"y", line++, 1}});
  }
  Diagnostics d;
  auto s = makeEntriesSource(list, &d);
  EXPECT_NE(s, nullptr) << d.formatAll();
  return s;
}

std::unique_ptr<TableSource> regexp(const std::string& text, bool subst = true) {
  Diagnostics d;
  auto s = makeRegexpSource(text, {"y", 1, 1}, RegexpDialect::kPosix, subst, &d);
  EXPECT_NE(s, nullptr) << d.formatAll();
  return s;
}

Table makeTable(SearchMode mode, std::vector<std::unique_ptr<TableSource>> sources,
                std::shared_ptr<const PostfixSettings> s = settings(), bool propagate = false) {
  TableOptions o;
  o.search = mode;
  o.propagateUnmatchedExtensions = propagate;
  return Table("t", o, std::move(sources), std::move(s));
}

std::vector<std::unique_ptr<TableSource>> one(std::unique_ptr<TableSource> s) {
  std::vector<std::unique_ptr<TableSource>> v;
  v.push_back(std::move(s));
  return v;
}

std::string get(const Table& t, const std::string& key) {
  LookupResult r = t.lookup(key);
  if (r.isFound()) {
    EXPECT_FALSE(r.value().empty());
    return r.value();
  }
  return r.isNotFound() ? "<notfound>" : "<error:" + r.reason() + ">";
}

std::vector<std::string> forms(SearchMode mode, const std::string& key,
                               std::shared_ptr<const PostfixSettings> s = settings()) {
  std::vector<std::string> out;
  for (const auto& k : planSearch(mode, key, *s).keys) {
    out.push_back(std::string(k.key) + (k.full ? "" : " (partial)"));
  }
  return out;
}

using V = std::vector<std::string>;

TEST(AddressSearchTest, KeyFormsFollowMailAddrFind) {
  EXPECT_EQ(forms(SearchMode::kAddress, "User+Ext@Example.COM"),
            (V{"User+Ext@Example.COM", "User@Example.COM (partial)", "@Example.COM (partial)"}));
  EXPECT_EQ(forms(SearchMode::kAddress, "user+ext@relay.corp.local"),
            (V{"user+ext@relay.corp.local", "user@relay.corp.local (partial)", "user+ext (partial)",
               "user (partial)", "@relay.corp.local (partial)"}));
  EXPECT_EQ(forms(SearchMode::kAddress, "root@LOCALHOST"),
            (V{"root@LOCALHOST", "root (partial)", "@LOCALHOST (partial)"}));
  EXPECT_EQ(forms(SearchMode::kAddress, "\"john doe+x\"@localhost"),
            (V{"\"john doe+x\"@localhost", "\"john doe\"@localhost (partial)",
               "\"john doe+x\" (partial)", "\"john doe\" (partial)", "@localhost (partial)"}));
  EXPECT_EQ(forms(SearchMode::kAddress, "user+ext"), (V{"user+ext", "user (partial)"}));
  EXPECT_EQ(forms(SearchMode::kAddress, ""), (V{""}));
  EXPECT_EQ(forms(SearchMode::kExact, "a+b@c"), (V{"a+b@c"}));
  // Sender: external form first, internal next when they differ.
  EXPECT_EQ(forms(SearchMode::kSender, "\"a b\"@x"), (V{"\"a b\"@x", "a b@x", "@x (partial)"}));
  EXPECT_EQ(forms(SearchMode::kSender, "<>"), (V{"<>"}));
  EXPECT_EQ(
      forms(SearchMode::kTransport, "user+x@a.b.example.com"),
      (V{"user+x@a.b.example.com", "user@a.b.example.com (partial)", "a.b.example.com (partial)",
         ".b.example.com (partial)", ".example.com (partial)", ".com (partial)", "*"}));
  EXPECT_EQ(forms(SearchMode::kTransport, "u@a.example.com", settings("+", true)),
            (V{"u@a.example.com", "a.example.com (partial)", "example.com (partial)",
               "com (partial)", "*"}));
  EXPECT_EQ(forms(SearchMode::kTransport, "*"), (V{"*"}));
  EXPECT_EQ(forms(SearchMode::kTransport, "example.com"), (V{"example.com"}));
}

TEST(TableTest, GenericExamples) {
  // generic(5): his@localdomain.local -> hisaccount@hisisp.example, @localdomain.local ->
  // hisaccount+local@hisisp.example
  auto t = makeTable(SearchMode::kAddress,
                     one(entries({{"his@localdomain.local", "hisaccount@hisisp.example"},
                                  {"her@localdomain.local", "heraccount@herisp.example"},
                                  {"@localdomain.local", "hisaccount+local@hisisp.example"}})));
  EXPECT_EQ(get(t, "his@localdomain.local"), "hisaccount@hisisp.example");
  EXPECT_EQ(get(t, "HER@LocalDomain.Local"), "heraccount@herisp.example");
  EXPECT_EQ(get(t, "his+x@localdomain.local"), "hisaccount@hisisp.example");
  EXPECT_EQ(get(t, "other@localdomain.local"), "hisaccount+local@hisisp.example");
  EXPECT_EQ(get(t, "his@elsewhere"), "<notfound>");
}

TEST(TableTest, AtDomainResultsKeepLocalpart) {
  auto t = makeTable(SearchMode::kAddress, one(entries({{"@old.example", "@new.example"},
                                                        {"joe@x.example", "@y.example"},
                                                        {"root", "@admins.example"}})));
  EXPECT_EQ(get(t, "anne+list@old.example"), "anne+list@new.example");  // @domain step: keep all
  EXPECT_EQ(get(t, "joe+tag@x.example"), "joe@y.example");  // matched stripped: drop ext
  EXPECT_EQ(get(t, "joe@x.example"), "joe@y.example");
  EXPECT_EQ(get(t, "\"a b\"@old.example"), "\"a b\"@new.example");
  EXPECT_EQ(get(t, "root@localhost"), "root@admins.example");
  EXPECT_EQ(get(t, "root@elsewhere"), "<notfound>");  // bare localpart only for local domains
}

TEST(TableTest, PropagateUnmatchedExtension) {
  auto kv = std::vector<std::pair<std::string, std::string>>{
      {"joe@x.example", "joseph@y.example"},
      {"@d.example", "@e.example"},
      {"list@x.example", "a@y.example, b@y.example"},
      {"joe+full@x.example", "exact@y.example"}};
  auto on = makeTable(SearchMode::kAddress, one(entries(kv)), settings(), true);
  auto off = makeTable(SearchMode::kAddress, one(entries(kv)), settings(), false);
  EXPECT_EQ(get(on, "joe+tag@x.example"), "joseph+tag@y.example");
  EXPECT_EQ(get(off, "joe+tag@x.example"), "joseph@y.example");
  EXPECT_EQ(get(on, "joe+full@x.example"), "exact@y.example");  // full match: nothing unmatched
  EXPECT_EQ(get(on, "sam+tag@d.example"), "sam+tag@e.example");
  EXPECT_EQ(get(on, "list+t@x.example"), "a+t@y.example, b+t@y.example");
}

TEST(TableTest, DelimiterSetsAndExceptions) {
  auto kv = std::vector<std::pair<std::string, std::string>>{{"user@x", "U"},
                                                             {"owner-list@x", "OWNER"},
                                                             {"owner@x", "O"},
                                                             {"list@x", "L"},
                                                             {"list-request@x", "REQ"}};
  auto t = makeTable(SearchMode::kAddress, one(entries(kv)), settings("+-"));
  EXPECT_EQ(get(t, "user+a@x"), "U");
  EXPECT_EQ(get(t, "user-a@x"), "U");
  EXPECT_EQ(get(t, "owner-list@x"), "OWNER");
  EXPECT_EQ(get(t, "owner-other@x"), "<notfound>");  // owner-foo is never split with '-'
  EXPECT_EQ(get(t, "list-request@x"), "REQ");
  EXPECT_EQ(get(t, "list-request2@x"), "L");
  auto plus = makeTable(SearchMode::kAddress, one(entries(kv)), settings("+"));
  EXPECT_EQ(get(plus, "user-a@x"), "<notfound>");
}

TEST(TableTest, LocalBareKeys) {
  auto t = makeTable(SearchMode::kAddress,
                     one(entries({{"root", "admin@corp.com"}, {"joe+ext", "JE"}})));
  EXPECT_EQ(get(t, "root@relay.corp.local"), "admin@corp.com");
  EXPECT_EQ(get(t, "Root@RELAY.corp.local"), "admin@corp.com");
  EXPECT_EQ(get(t, "root+x@localhost"), "admin@corp.com");
  EXPECT_EQ(get(t, "joe+ext@localhost"), "JE");
  EXPECT_EQ(get(t, "root@example.com"), "<notfound>");
}

TEST(TableTest, LocalDomainsFollowMailAddrFindAndResolveLocal) {
  // myorigin is compared as is; mydestination and [ip] literals (local_domains) as
  // resolve_local() does, with one trailing dot stripped (never "dot-dot" or a lone dot).
  auto s = std::make_shared<PostfixSettings>();
  s->myorigin = "origin.example";
  s->localDomains = {"dest.example", "[127.0.0.1]"};
  s->recipientDelimiter = "+";
  auto t = makeTable(SearchMode::kAddress, one(entries({{"root", "admin@corp.com"}})), s);
  EXPECT_EQ(get(t, "root@ORIGIN.example"), "admin@corp.com");
  EXPECT_EQ(get(t, "root@origin.example."), "<notfound>");  // myorigin: no dot stripping
  EXPECT_EQ(get(t, "root@Dest.Example."), "admin@corp.com");
  EXPECT_EQ(get(t, "root+x@[127.0.0.1]."), "admin@corp.com");
  EXPECT_EQ(get(t, "root@dest.example.."), "<notfound>");
  EXPECT_EQ(get(t, "root@."), "<notfound>");
  EXPECT_EQ(forms(SearchMode::kSender, "u+x@dest.example.", s),
            (V{"u+x@dest.example.", "u@dest.example. (partial)", "u+x (partial)", "u (partial)",
               "@dest.example. (partial)"}));
}

TEST(TableTest, QuotedLocalparts) {
  auto t = makeTable(SearchMode::kAddress,
                     one(entries({{"\"john doe\"@corp.local", "john.doe@corp.com"},
                                  {"\"jane doe\"", "@corp.com"}})),
                     [] {
                       auto s = std::make_shared<PostfixSettings>(*settings());
                       s->localDomains.push_back("corp.local");
                       return s;
                     }());
  EXPECT_EQ(get(t, "\"john doe\"@corp.local"), "john.doe@corp.com");
  EXPECT_EQ(get(t, "\"john doe+x\"@corp.local"), "john.doe@corp.com");
  EXPECT_EQ(get(t, "\"jane doe\"@corp.local"), "\"jane doe\"@corp.com");
}

TEST(TableTest, SeveralSourcesRegexpAnswersFullKeyFirst) {
  std::vector<std::unique_ptr<TableSource>> sources;
  sources.push_back(entries({{"@corp.local", "from-entries@corp.com"}}));
  sources.push_back(regexp("/^(.*)@srv[0-9]+\\.corp\\.local$/ ${1}@corp.com\n"));
  auto t = makeTable(SearchMode::kAddress, std::move(sources));
  EXPECT_EQ(get(t, "x@corp.local"), "from-entries@corp.com");
  EXPECT_EQ(get(t, "Alice@SRV1.corp.local"), "Alice@corp.com");  // regexp sees original case

  std::vector<std::unique_ptr<TableSource>> s2;
  s2.push_back(entries({{"@srv1.corp.local", "at-domain@corp.com"}}));
  s2.push_back(regexp("/^(.*)@srv[0-9]+\\.corp\\.local$/ ${1}@corp.com\n"));
  auto t2 = makeTable(SearchMode::kAddress, std::move(s2));
  EXPECT_EQ(get(t2, "bob@srv1.corp.local"), "bob@corp.com");  // full key (regexp) beats @domain

  // Patterns are never asked with partial keys.
  std::vector<std::unique_ptr<TableSource>> s3;
  s3.push_back(regexp("/^user@x$/ from-regexp\n"));
  auto t3 = makeTable(SearchMode::kAddress, std::move(s3));
  EXPECT_EQ(get(t3, "user+ext@x"), "<notfound>");
}

TEST(TableTest, TransportExamples) {
  // transport(5) examples.
  auto kv = std::vector<std::pair<std::string, std::string>>{
      {"example.com", "smtp:bar.example"},
      {".example.com", "smtp:sub.example"},
      {"user@foo.org", "error:mail for user@foo.org is not deliverable"},
      {"*", "smtp:[smtp.office365.com]:587"}};
  auto t = makeTable(SearchMode::kTransport, one(entries(kv)));
  EXPECT_EQ(get(t, "a@example.com"), "smtp:bar.example");
  EXPECT_EQ(get(t, "a@b.c.Example.com"), "smtp:sub.example");
  EXPECT_EQ(get(t, "user+x@foo.org"), "error:mail for user@foo.org is not deliverable");
  EXPECT_EQ(get(t, "a@other.net"), "smtp:[smtp.office365.com]:587");
  EXPECT_EQ(get(t, "*"), "smtp:[smtp.office365.com]:587");

  auto pdms = makeTable(SearchMode::kTransport,
                        one(entries({{"example.com", "smtp:parent-style"}})), settings("+", true));
  EXPECT_EQ(get(pdms, "a@sub.example.com"), "smtp:parent-style");
  auto dots = makeTable(SearchMode::kTransport,
                        one(entries({{"example.com", "smtp:parent-style"}})), settings("+", false));
  EXPECT_EQ(get(dots, "a@sub.example.com"), "<notfound>");

  // A regexp source answers '*' too (Postfix's wildcard lookup is a full-key lookup), but not
  // domains.
  std::vector<std::unique_ptr<TableSource>> s;
  s.push_back(regexp("/^\\*$/ smtp:wild\n/^example\\.org$/ smtp:never\n", false));
  auto rx = makeTable(SearchMode::kTransport, std::move(s));
  EXPECT_EQ(get(rx, "a@example.org"), "smtp:wild");
}

TEST(TableTest, SenderDependentRelayhost) {
  auto t = makeTable(SearchMode::kSender,
                     one(entries({{"nagios@corp.local", "[smtp-alerts.corp.local]:25"},
                                  {"@corp.local", "DUNNO"},
                                  {"<>", "[bounces.corp.local]"}})));
  EXPECT_EQ(get(t, "Nagios+x@corp.local"), "[smtp-alerts.corp.local]:25");
  EXPECT_EQ(get(t, "other@corp.local"), "DUNNO");
  EXPECT_EQ(get(t, "<>"), "[bounces.corp.local]");
  EXPECT_EQ(get(t, "x@elsewhere"), "<notfound>");
}

class ErrorSource : public TableSource {
 public:
  bool isPattern() const override { return false; }
  LookupResult lookup(std::string_view) const override { return LookupResult::tempError("down"); }
  std::string describe() const override { return "error"; }
};

TEST(TableTest, ErrorStopsTheSearch) {
  std::vector<std::unique_ptr<TableSource>> s;
  s.push_back(entries({{"a@x", "found"}}));
  s.push_back(std::make_unique<ErrorSource>());
  auto t = makeTable(SearchMode::kAddress, std::move(s));
  EXPECT_EQ(get(t, "a@x"), "found");
  EXPECT_EQ(get(t, "b@x"), "<error:down>");
}

TEST(TableTest, EmptyResultIsATemporaryError) {
  // maps_find(): a table answering "" fails the lookup with DICT_ERR_RETRY (mail deferred);
  // later sources are not asked.
  std::vector<std::unique_ptr<TableSource>> s;
  Diagnostics d;
  s.push_back(
      makeRegexpSource("/^a/\n/^(x)?b/ ${1}\n", {"y", 1, 1}, RegexpDialect::kPosix, true, &d));
  s.push_back(entries({{"a@x", "later"}, {"c@x", "found"}}));
  auto t = makeTable(SearchMode::kAddress, std::move(s));
  EXPECT_EQ(get(t, "a@x"), "<error:regexp lookup of \"a@x\" returns an empty string result>");
  EXPECT_EQ(t.lookup("b@x").kind(), LookupResult::Kind::kTempError);
  EXPECT_EQ(get(t, "xb@x"), "x");
  EXPECT_EQ(get(t, "c@x"), "found");
}

TEST(TableTest, EntriesErrors) {
  Diagnostics d;
  auto s = makeEntriesSource({{"A@x", "1", {"c.yaml", 3, 5}},
                              {"a@X", "2", {"c.yaml", 4, 5}},
                              {"b@x", "", {"c.yaml", 5, 5}}},
                             &d);
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(d.formatAll(),
            "c.yaml:4:5: duplicate key \"a@X\" (keys are case-insensitive; first at line 3)\n"
            "c.yaml:5:5: empty value for key \"b@x\"\n");
}

TEST(TableFileTest, PostmapSourceFormat) {
  Diagnostics d;
  auto m = parsePostmapSource(
      "Foo@Example.com  bar1\n"
      "foo@example.com bar2\n"
      "# comment\n"
      "  # indented comment\n"
      "multi  line1\n"
      "  line2\n"
      "novalue\n"
      "\"a b\"@x quoted\n"
      "\"open val\n"
      "k\tv1  v2  \n",
      {"generic", 1, 0}, &d);
  EXPECT_EQ(m.at("foo@example.com"), "bar1");
  EXPECT_EQ(m.at("multi"), "line1  line2");
  EXPECT_EQ(m.at("\"a b\"@x"), "quoted");
  EXPECT_EQ(m.at("k"), "v1  v2");
  EXPECT_EQ(m.count("novalue"), 0u);
  EXPECT_EQ(d.formatAll(),
            "generic:2:1: warning: duplicate entry: \"foo@example.com\"\n"
            "generic:7:1: warning: expected format: key whitespace value -- ignoring this line\n"
            "generic:9:1: warning: unbalanced '\"' in '\"open val' -- ignoring this line\n");
}

TEST(TableFileTest, LoadFiles) {
  const std::string dir = ::testing::TempDir();
  const std::string hashPath = dir + "/relaykit_table_test_generic";
  const std::string rePath = dir + "/relaykit_table_test_regexp";
  std::ofstream(hashPath) << "User@Example.com mapped@example.net\n";
  std::ofstream(rePath) << "/^(.*)@example\\.org$/ $1@example.net\n";
  Diagnostics d;
  auto h = loadTableFileSource("hash:" + hashPath, {"c.yaml", 2, 3}, true, &d);
  auto t = loadTableFileSource("texthash:" + hashPath, {"c.yaml", 2, 3}, true, &d);
  auto r = loadTableFileSource("regexp:" + rePath, {"c.yaml", 2, 3}, true, &d);
  ASSERT_NE(h, nullptr);
  ASSERT_NE(t, nullptr);
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(h->isPattern());
  EXPECT_TRUE(r->isPattern());
  EXPECT_EQ(h->describe(), "hash:" + hashPath);
  EXPECT_EQ(h->lookup("user@EXAMPLE.com").value(), "mapped@example.net");
  EXPECT_EQ(r->lookup("me@example.org").value(), "me@example.net");
  Diagnostics bad;
  EXPECT_EQ(loadTableFileSource("regexp:" + rePath, {"c.yaml", 2, 3}, false, &bad), nullptr);
  EXPECT_EQ(bad.formatAll(), rePath +
                                 ":1:23: regular expression substitution is not allowed in this "
                                 "table\n");
  Diagnostics missing;
  EXPECT_EQ(loadTableFileSource("hash:/nonexistent/x", {"c.yaml", 2, 3}, true, &missing), nullptr);
  EXPECT_EQ(missing.formatAll(),
            "c.yaml:2:3: cannot read /nonexistent/x: No such file or directory\n");
  Diagnostics type;
  EXPECT_EQ(loadTableFileSource("cdb:/x", {"c.yaml", 2, 3}, true, &type), nullptr);
  EXPECT_EQ(
      type.formatAll(),
      "c.yaml:2:3: unsupported table type \"cdb\" (supported: hash, texthash, regexp, pcre)\n");
  std::remove(hashPath.c_str());
  std::remove(rePath.c_str());
}

}  // namespace
}  // namespace relaykit

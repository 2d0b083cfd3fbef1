// SPDX-License-Identifier: Apache-2.0
// casefold_test.cc: table-key folding and UTF-8 screening as Postfix does them with
// smtputf8_enable on and off (the expectations are what postmap -q printed on Postfix 3.7 with
// a hash: table: see common/casefold.h), and their effect through Table and the sources.
#include "common/casefold.h"

#include <gtest/gtest.h>

#include "common/table.h"
#include "common/table_file.h"

namespace relaykit {
namespace {

TEST(CasefoldTest, Utf8Validation) {
  EXPECT_TRUE(isValidUtf8(""));
  EXPECT_TRUE(isValidUtf8("plain@example.com"));
  EXPECT_TRUE(isValidUtf8("jos\xc3\xa9"));                    // é
  EXPECT_TRUE(isValidUtf8("\xe2\x82\xac \xf0\x9f\x98\x80"));  // € and an emoji
  EXPECT_FALSE(isValidUtf8("jos\xe9"));                       // Latin-1
  EXPECT_FALSE(isValidUtf8("\xc3"));                          // truncated
  EXPECT_FALSE(isValidUtf8("\xc0\xaf"));                      // overlong '/'
  EXPECT_FALSE(isValidUtf8("\xe0\x80\xaf"));                  // overlong, 3 bytes
  EXPECT_FALSE(isValidUtf8("\xed\xa0\x80"));                  // a surrogate
  EXPECT_FALSE(isValidUtf8("\xf4\x90\x80\x80"));              // above U+10FFFF
  EXPECT_FALSE(isValidUtf8("\x80"));                          // a lone continuation byte
}

TEST(CasefoldTest, FoldingWithAndWithoutSmtputf8) {
  EXPECT_EQ(foldTableKey("Root@Relay.Corp.LOCAL", true), "root@relay.corp.local");
  EXPECT_EQ(foldTableKey("JOS\xc3\x89@EXAMPLE.COM", true), "jos\xc3\xa9@example.com");
  EXPECT_EQ(foldTableKey("STRA\xc3\x9f"
                         "E",
                         true),
            "strasse");                                    // full folding: ß is ss
  EXPECT_EQ(foldTableKey("jos\xe9", true), std::nullopt);  // never looked up
  // smtputf8_enable = no: ASCII only, any bytes.
  EXPECT_EQ(foldTableKey("JOS\xc3\x89@EXAMPLE.COM", false), "jos\xc3\x89@example.com");
  EXPECT_EQ(foldTableKey("JOS\xc9", false), "jos\xc9");
}

std::shared_ptr<const PostfixSettings> settings(bool smtputf8) {
  auto s = std::make_shared<PostfixSettings>();
  s->localDomains = {"relay.corp.local"};
  s->recipientDelimiter = "+";
  s->smtputf8Enable = smtputf8;
  return s;
}

Table tableOf(bool smtputf8, const std::string& regexpText) {
  std::vector<TableEntry> list = {{"jos\xc3\xa9@example.com", "found-hash", {"y", 1, 1}},
                                  {"stra\xc3\x9f"
                                   "e@example.com",
                                   "found-strasse",
                                   {"y", 2, 1}}};
  Diagnostics d;
  std::vector<std::unique_ptr<TableSource>> sources;
  sources.push_back(makeEntriesSource(list, &d, smtputf8));
  sources.push_back(makeRegexpSource(regexpText, {"y", 3, 1}, RegexpDialect::kPosix, true, &d));
  EXPECT_FALSE(d.hasErrors()) << d.formatAll();
  TableOptions o;
  o.search = SearchMode::kExact;
  return Table("t", o, std::move(sources), settings(smtputf8));
}

std::string get(const Table& t, const std::string& key) {
  LookupResult r = t.lookup(key);
  return r.isFound() ? r.value() : r.isNotFound() ? "<none>" : "<error>";
}

TEST(CasefoldTest, TableWithSmtputf8) {
  Table t = tableOf(true, "/^\xe9t/ latin-re\n/^x/ x-re\n");
  EXPECT_EQ(get(t, "JOS\xc3\x89@EXAMPLE.COM"), "found-hash");
  EXPECT_EQ(get(t, "STRASSE@example.com"), "found-strasse");
  EXPECT_EQ(get(t,
                "STRA\xc3\x9f"
                "E@example.com"),
            "found-strasse");
  EXPECT_EQ(get(t, "\xe9t\xe9@example.com"), "<none>");  // not UTF-8: no source is asked
  EXPECT_EQ(get(t, "x\xe9"), "<none>");
  EXPECT_EQ(get(t, "xyz"), "x-re");
}

TEST(CasefoldTest, TableWithoutSmtputf8) {
  Table t = tableOf(false, "/^\xe9t/ latin-re\n");
  EXPECT_EQ(get(t, "jos\xc3\xa9@EXAMPLE.COM"), "found-hash");
  EXPECT_EQ(get(t, "JOS\xc3\x89@EXAMPLE.COM"), "<none>");  // ASCII folding only
  EXPECT_EQ(get(t, "STRASSE@example.com"), "<none>");
  EXPECT_EQ(get(t, "\xe9t\xe9@example.com"), "latin-re");
}

TEST(CasefoldTest, SourcesScreenTheirText) {
  Diagnostics d;
  auto bad = makeEntriesSource({{"jos\xe9@x", "v", {"c.yaml", 4, 5}}}, &d, true);
  EXPECT_EQ(bad, nullptr);
  EXPECT_NE(d.formatAll().find("c.yaml:4:5: key \"jos"), std::string::npos) << d.formatAll();
  Diagnostics dup;
  EXPECT_EQ(makeEntriesSource({{"JOS\xc3\x89@x", "1", {"c.yaml", 1, 1}},
                               {"jos\xc3\xa9@x", "2", {"c.yaml", 2, 1}}},
                              &dup, true),
            nullptr);  // one key once folded
  Diagnostics off;
  EXPECT_NE(makeEntriesSource({{"jos\xe9@x", "v", {"c.yaml", 1, 1}}}, &off, false), nullptr);

  Diagnostics w;
  auto m = parsePostmapSource("\xe9t\xe9@x latin\nJOS\xc3\x89@x utf8\n", {"t", 1, 0}, &w, true);
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(m.count("jos\xc3\xa9@x"), 1u);
  EXPECT_NE(w.formatAll().find("t:1:1: warning: non-UTF-8 input"), std::string::npos)
      << w.formatAll();
}

}  // namespace
}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// allowance_table_test.cc: allowance values, file keys, the allowance index (exact and @domain
// search) and allowances_file loading (texthash source text, a Berkeley DB hash file written
// here with libdb the way postmap writes it: keys and values with a trailing NUL).
#include "policyd/allowance_table.h"

#include <db.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "common/config.h"
#include "common/postmap_db.h"
#include "policyd/policy_config.h"

namespace relaykit::policy {

// Defined in engine_test.cc (the same test binary).
bool operator==(const RateWindow& a, const RateWindow& b);

namespace {

constexpr std::int64_t kMinute = 60000000;
constexpr std::int64_t kHour = 60 * kMinute;
constexpr std::int64_t kDay = 24 * kHour;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/allowance_test.XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string file(const std::string& name, const std::string& text) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A hash .db as postmap writes it (with NUL unless `nul` is false).
void writeDb(const std::string& dbPath,
             const std::vector<std::tuple<std::string, std::string, bool>>& entries) {
  DB* db = nullptr;
  ASSERT_EQ(db_create(&db, nullptr, 0), 0);
  ASSERT_EQ(db->open(db, nullptr, dbPath.c_str(), nullptr, DB_HASH, DB_CREATE | DB_TRUNCATE, 0644),
            0);
  for (const auto& [k, v, nul] : entries) {
    DBT key{};
    DBT value{};
    key.data = const_cast<char*>(k.c_str());
    key.size = static_cast<u_int32_t>(k.size() + (nul ? 1 : 0));
    value.data = const_cast<char*>(v.c_str());
    value.size = static_cast<u_int32_t>(v.size() + (nul ? 1 : 0));
    ASSERT_EQ(db->put(db, nullptr, &key, &value, 0), 0);
  }
  db->close(db, 0);
}

std::shared_ptr<const PolicyConfig> parse(const std::string& yaml, Diagnostics* diags) {
  std::shared_ptr<const Config> config = loadConfigText(yaml, "test.yaml", diags);
  return config == nullptr ? nullptr : parsePolicyConfig(*config, diags);
}

std::string limitYaml(const std::string& key, const std::string& file,
                      const std::string& extra = "") {
  return "policy:\n  limits:\n    - name: s\n      key: " + key +
         "\n      max: 3\n      per: 1h\n      allowances_file: " + file + "\n" + extra;
}

PolicyRequest request(const std::string& sender, const std::string& client = "10.1.2.3",
                      const std::string& sasl = "", const std::string& recipient = "r@x.org") {
  PolicyRequest r;
  r.add("request", "smtpd_access_policy");
  r.add("protocol_state", "END-OF-MESSAGE");
  r.add("sender", sender);
  r.add("recipient", recipient);
  r.add("client_address", client);
  if (!sasl.empty()) {
    r.add("sasl_username", sasl);
  }
  return r;
}

std::vector<RateWindow> windowsOf(const PolicyConfig& c, const PolicyRequest& r) {
  const LimitRule& rule = c.limits.at(0);
  const std::optional<std::string> principal = principalOf(rule.key, r);
  return principal ? rule.windowsFor(*principal) : std::vector<RateWindow>{};
}

TEST(AllowanceValue, Forms) {
  EXPECT_EQ(*parseAllowanceValue("10000/1d"), (std::vector<RateWindow>{{10000, kDay}}));
  EXPECT_EQ(*parseAllowanceValue("100/1m, 10000/1d"),
            (std::vector<RateWindow>{{100, kMinute}, {10000, kDay}}));
  EXPECT_EQ(*parseAllowanceValue("5/60,7/2h"),
            (std::vector<RateWindow>{{5, kMinute}, {7, 2 * kHour}}));
  EXPECT_EQ(*parseAllowanceValue("1/366d"), (std::vector<RateWindow>{{1, 366 * kDay}}));
  EXPECT_EQ(*parseAllowanceValue("1000000000000000/1w"),
            (std::vector<RateWindow>{{1000000000000000, 7 * kDay}}));
}

TEST(AllowanceValue, Errors) {
  for (const char* bad : {"", "100", "/1d", "100/", "0/1d", "-1/1d", "1/0", "1/0s", "1/367d",
                          "x/1d", "1/1x", "1/1m,", ",1/1m", "1/1m, 2/60s", "1/1m 2/1h",
                          "1000000000000001/1d", "99999999999999999999/1d", "1 /1d", "1/ 1d"}) {
    EXPECT_FALSE(parseAllowanceValue(bad).isOk()) << bad;
  }
  std::string many;
  for (int i = 1; i <= 17; ++i) {
    many += (i > 1 ? "," : "") + std::to_string(i) + "/" + std::to_string(i) + "m";
  }
  EXPECT_NE(parseAllowanceValue(many).status().message().find("more than 16 windows"),
            std::string::npos);
  EXPECT_NE(parseAllowanceValue(std::string(2000, '1')).status().message().find("longer"),
            std::string::npos);
}

TEST(AllowanceFileKey, Split) {
  EXPECT_EQ(*splitFileKey("a,b@c", 1), (std::vector<std::string_view>{"a,b@c"}));
  EXPECT_EQ(*splitFileKey("bob,corp.local", 2),
            (std::vector<std::string_view>{"bob", "corp.local"}));
  EXPECT_FALSE(splitFileKey("bob", 2).isOk());
  EXPECT_FALSE(splitFileKey("a,b,c", 2).isOk());
  EXPECT_FALSE(splitFileKey("a,", 2).isOk());
  EXPECT_FALSE(splitFileKey("", 1).isOk());
}

// Keys name principals exactly as requests do: case, extensions, networks, composite keys.
TEST(AllowanceFile, TexthashKeyForms) {
  TempDir dir;
  const std::string senders = dir.file("senders",
                                       "# monitoring\n"
                                       "Monitor+Disk@Corp.Local   10000/1d\n"
                                       "app@corp.local 5/1m,\n"
                                       "  100/1h\n"
                                       "@bulk.corp.local  50/1h\n");
  Diagnostics diags;
  auto c = parse(limitYaml("[sender]", "texthash:" + senders), &diags);
  ASSERT_NE(c, nullptr) << diags.formatAll();
  EXPECT_EQ(windowsOf(*c, request("monitor@corp.local")), (std::vector<RateWindow>{{10000, kDay}}));
  EXPECT_EQ(windowsOf(*c, request("MONITOR+x@corp.local")),
            (std::vector<RateWindow>{{10000, kDay}}));
  EXPECT_EQ(windowsOf(*c, request("app@corp.local")),
            (std::vector<RateWindow>{{5, kMinute}, {100, kHour}}));
  // @domain: every sender of that domain without its own entry; not sub-domains, not others.
  EXPECT_EQ(windowsOf(*c, request("x@bulk.corp.local")), (std::vector<RateWindow>{{50, kHour}}));
  EXPECT_EQ(windowsOf(*c, request("x@a.bulk.corp.local")), (std::vector<RateWindow>{{3, kHour}}));
  EXPECT_EQ(windowsOf(*c, request("other@corp.local")), (std::vector<RateWindow>{{3, kHour}}));
  const LimitRule& rule = c->limits[0];
  const auto* own = rule.allowanceFor(*principalOf(rule.key, request("app@corp.local")));
  ASSERT_NE(own, nullptr);
  EXPECT_EQ(rule.allowances->origin(*own), "texthash:" + senders + ", line 3: app@corp.local");
  ASSERT_EQ(rule.allowances->files().size(), 1u);
  EXPECT_EQ(rule.allowances->files()[0].path, senders);
  EXPECT_TRUE(rule.allowances->files()[0].stamp.exists);
}

TEST(AllowanceFile, CompositeAndNetworkKeys) {
  TempDir dir;
  const std::string pairs = dir.file("pairs", "Bob,Corp.Local 70/1m\n");
  const std::string nets = dir.file("nets",
                                    "10.9.8.77,@partner.org 2/1m\n"
                                    "10.9.8.1,boss@partner.org 9/1m\n");
  Diagnostics diags;
  auto c = parse(
      "policy:\n  limits:\n"
      "    - {name: a, key: [sasl_username, sender_domain], max: 7, per: 1m,\n"
      "       allowances_file: \"texthash:" +
          pairs +
          "\"}\n"
          "    - {name: b, key: [client_address/24, sender], max: 1, per: 1m,\n"
          "       allowances_file: \"texthash:" +
          nets + "\"}\n",
      &diags);
  ASSERT_NE(c, nullptr) << diags.formatAll();
  auto windows = [&](std::size_t limit, const PolicyRequest& r) {
    const LimitRule& rule = c->limits.at(limit);
    return rule.windowsFor(*principalOf(rule.key, r));
  };
  EXPECT_EQ(windows(0, request("x@corp.local", "10.0.0.1", "BOB")),
            (std::vector<RateWindow>{{70, kMinute}}));
  EXPECT_EQ(windows(0, request("x@corp.local", "10.0.0.1", "alice")),
            (std::vector<RateWindow>{{7, kMinute}}));
  // A network key: any address of the /24; the @domain form for the address part.
  EXPECT_EQ(windows(1, request("a@partner.org", "10.9.8.200")),
            (std::vector<RateWindow>{{2, kMinute}}));
  EXPECT_EQ(windows(1, request("boss@partner.org", "10.9.8.200")),
            (std::vector<RateWindow>{{9, kMinute}}));
  EXPECT_EQ(windows(1, request("a@partner.org", "10.9.9.1")),
            (std::vector<RateWindow>{{1, kMinute}}));
}

// [sender, recipient]: exact, then the recipient's @domain, then the sender's, then both.
TEST(AllowanceTable, DomainSearchOrder) {
  std::vector<KeyPart> key = {*parseKeyPart("sender"), *parseKeyPart("recipient")};
  AllowanceTable table;
  const std::uint32_t source = table.addSource(AllowanceTable::SourceKind::kYaml, "t.yaml");
  std::string problem;
  auto add = [&](const char* s, const char* r, std::int64_t max) {
    auto p = principalFromValues(key, {s, r});
    ASSERT_TRUE(p.has_value());
    ASSERT_TRUE(table.add(*p, "", {{max, kMinute}}, source, 1, 1, &problem)) << problem;
  };
  add("@a.org", "@b.org", 1);
  add("@a.org", "r@b.org", 2);
  add("s@a.org", "@b.org", 3);
  add("s@a.org", "r@b.org", 4);
  auto max = [&](const char* s, const char* r) -> std::int64_t {
    const auto* e = table.search(key, *principalFromValues(key, {s, r}));
    return e == nullptr ? 0 : table.windows(*e)[0].max;
  };
  EXPECT_EQ(max("s@a.org", "r@b.org"), 4);
  EXPECT_EQ(max("s@a.org", "q@b.org"), 3);
  EXPECT_EQ(max("t@a.org", "r@b.org"), 2);
  EXPECT_EQ(max("t@a.org", "q@b.org"), 1);
  EXPECT_EQ(max("t@c.org", "q@b.org"), 0);
  EXPECT_FALSE(table.add(*principalFromValues(key, {"S@A.org", "r@b.org"}), "", {{1, kMinute}},
                         source, 9, 1, &problem));
  EXPECT_NE(problem.find("the first: t.yaml:1:1"), std::string::npos) << problem;
}

// A separator byte inside a value (doubled in the principal) does not split a segment.
TEST(AllowanceTable, PrincipalWithSeparatorBytes) {
  std::vector<KeyPart> key = {*parseKeyPart("sasl_username"), *parseKeyPart("sender")};
  AllowanceTable table;
  const std::uint32_t source = table.addSource(AllowanceTable::SourceKind::kYaml, "t.yaml");
  std::string problem;
  ASSERT_TRUE(table.add(*principalFromValues(key, {"a\x1f", "@d.org"}), "", {{5, kMinute}}, source,
                        1, 1, &problem));
  const auto* e = table.search(key, *principalFromValues(key, {"a\x1f", "x@d.org"}));
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(table.windows(*e)[0].max, 5);
  EXPECT_EQ(table.search(key, *principalFromValues(key, {"a", "x@d.org"})), nullptr);
}

TEST(AllowanceFile, ErrorsNameTheLine) {
  TempDir dir;
  const std::string f = dir.file("bad",
                                 " continuation without a line\n"
                                 "ok@corp.local 10/1h\n"
                                 "novalue@corp.local\n"
                                 "bad@corp.local 10 per hour\n"
                                 "OK+x@corp.local 20/1h\n"
                                 "zero@corp.local 0/1h\n");
  Diagnostics diags;
  EXPECT_EQ(parse(limitYaml("[sender]", "texthash:" + f), &diags), nullptr);
  const std::string all = diags.formatAll();
  for (const std::string& want :
       {f + ":1:1: limit \"s\" allowances_file: logical line must not start with whitespace",
        f + ":3:1: limit \"s\" allowances_file: expected format: key whitespace value",
        f + ":4:1: limit \"s\" allowances_file: key \"bad@corp.local\": bad allowance",
        f +
            ":5:1: limit \"s\" allowances_file: key \"ok+x@corp.local\": a second allowance for "
            "the same principal (the first: texthash:" +
            f + ", line 2: ok@corp.local)",
        f + ":6:1: limit \"s\" allowances_file: key \"zero@corp.local\": bad allowance"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  }
}

TEST(AllowanceFile, FileProblems) {
  TempDir dir;
  for (const std::string& spec :
       {std::string("texthash:") + dir.path() + "/missing", std::string("btree:/x"),
        std::string("texthash:relative"), std::string("hash:") + dir.path() + "/nodb",
        std::string("texthash:") + dir.path()}) {
    Diagnostics diags;
    EXPECT_EQ(parse(limitYaml("[sender]", "\"" + spec + "\""), &diags), nullptr) << spec;
    EXPECT_NE(diags.formatAll().find("test.yaml:7:24: limit \"s\": allowances_file: "),
              std::string::npos)
        << diags.formatAll();
  }
  // Inline entries and the file name one principal twice: refused.
  const std::string f = dir.file("a", "a@b.c 1/1h\n");
  Diagnostics diags;
  EXPECT_EQ(parse(limitYaml("[sender]", "texthash:" + f,
                            "      allowances:\n        - {match: {sender: A@b.c}, max: 2, per: "
                            "1h}\n"),
                  &diags),
            nullptr);
  EXPECT_NE(diags.formatAll().find("a second allowance for the same principal (the first: "
                                   "test.yaml:9:19)"),
            std::string::npos)
      << diags.formatAll();
}

TEST(AllowanceFile, ManyBadLinesAreCapped) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 500; ++i) {
    text += "u" + std::to_string(i) + "@x.org nonsense\n";
  }
  Diagnostics diags;
  EXPECT_EQ(parse(limitYaml("[sender]", "texthash:" + dir.file("f", text)), &diags), nullptr);
  EXPECT_EQ(diags.all().size(), 101u);
  EXPECT_NE(diags.formatAll().find("400 more problems in texthash:"), std::string::npos);
}

TEST(PostmapDb, NulHandlingAndBounds) {
  TempDir dir;
  const std::string db = dir.path() + "/t.db";
  writeDb(db, {{"with@nul.org", "1/1h", true},
               {"without@nul.org", "2/1h", false},
               {"both@x.org", "3/1h", false},
               {"both@x.org", "4/1h", true}});
  auto entries = readPostmapDb(db, 1 << 20, 100);
  ASSERT_TRUE(entries.isOk()) << entries.status().message();
  std::map<std::string, std::string> got;
  for (const auto& e : *entries) {
    got[e.key] = e.value;
  }
  EXPECT_EQ(got,
            (std::map<std::string, std::string>{
                {"with@nul.org", "1/1h"}, {"without@nul.org", "2/1h"}, {"both@x.org", "4/1h"}}));
  EXPECT_FALSE(readPostmapDb(db, 1 << 20, 2).isOk());
  EXPECT_EQ(readPostmapDb(db, 100, 100).status().kind(), ErrorKind::kTooLarge);
  const std::string text = dir.file("text.db", "not a database\n");
  EXPECT_FALSE(readPostmapDb(text, 1 << 20, 100).isOk());
  EXPECT_EQ(readPostmapDb(dir.path() + "/none.db", 1 << 20, 100).status().kind(),
            ErrorKind::kNotFound);
}

TEST(AllowanceFile, HashFile) {
  TempDir dir;
  writeDb(dir.path() + "/allow.db",
          {{"monitor@corp.local", "10000/1d", true}, {"@bulk.org", "9/1h", true}});
  Diagnostics diags;
  auto c = parse(limitYaml("[sender]", "hash:" + dir.path() + "/allow"), &diags);
  ASSERT_NE(c, nullptr) << diags.formatAll();
  EXPECT_EQ(windowsOf(*c, request("Monitor+a@corp.local")),
            (std::vector<RateWindow>{{10000, kDay}}));
  EXPECT_EQ(windowsOf(*c, request("z@bulk.org")), (std::vector<RateWindow>{{9, kHour}}));
  const LimitRule& rule = c->limits[0];
  const auto* own = rule.allowanceFor(*principalOf(rule.key, request("z@bulk.org")));
  ASSERT_NE(own, nullptr);
  EXPECT_EQ(rule.allowances->origin(*own), "hash:" + dir.path() + "/allow: @bulk.org");
  ASSERT_EQ(rule.allowances->files().size(), 1u);
  EXPECT_EQ(rule.allowances->files()[0].path, dir.path() + "/allow.db");
  writeDb(dir.path() + "/bad.db", {{"x@y.org", "lots", true}});
  Diagnostics bad;
  EXPECT_EQ(parse(limitYaml("[sender]", "hash:" + dir.path() + "/bad"), &bad), nullptr);
  EXPECT_NE(bad.formatAll().find(dir.path() + "/bad.db:0:0: limit \"s\" allowances_file: key "
                                              "\"x@y.org\": bad allowance \"lots\""),
            std::string::npos)
      << bad.formatAll();
}

// An empty file is valid (everyone gets the default) and still watched.
TEST(AllowanceFile, EmptyFileIsWatched) {
  TempDir dir;
  Diagnostics diags;
  auto c = parse(limitYaml("[sender]", "texthash:" + dir.file("empty", "# none yet\n")), &diags);
  ASSERT_NE(c, nullptr) << diags.formatAll();
  ASSERT_NE(c->limits[0].allowances, nullptr);
  EXPECT_EQ(c->limits[0].allowances->files().size(), 1u);
  EXPECT_EQ(windowsOf(*c, request("a@b.org")), (std::vector<RateWindow>{{3, kHour}}));
}

}  // namespace
}  // namespace relaykit::policy

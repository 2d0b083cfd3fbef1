// SPDX-License-Identifier: Apache-2.0
// config_test.cc: loadConfig and the YAML helpers: every error with its exact message and
// FILE:LINE:COL, and that all problems of a file are reported at once.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "common/config.h"
#include "common/yaml_util.h"

namespace relaykit {
namespace {

std::shared_ptr<const Config> load(const std::string& text, Diagnostics* diags) {
  return loadConfigText(text, "t.yaml", diags);
}

// Every diagnostic of `text`, formatted.
std::string problems(const std::string& text) {
  Diagnostics diags;
  auto config = load(text, &diags);
  EXPECT_EQ(config == nullptr, diags.hasErrors());
  return diags.formatAll();
}

TEST(ConfigTest, FullExampleLoads) {
  const std::string text = R"(postfix:
  myorigin: relay.corp.local
  local_domains: [relay.corp.local, localhost]
  recipient_delimiter: "+"
  parent_domain_matches_subdomains: false
tables:
  generic:
    search: address
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          "@relay.corp.local": noreply@corp.com
      - regexp: |
          /^(.*)@srv[0-9]+\.corp\.local$/   ${1}@corp.com
  transport:
    search: transport
    sources:
      - entries:
          corp.local: "smtp:[exchange.corp.local]:25"
          "*": "smtp:[smtp.office365.com]:587"
socketmap:
  listen: ["inet:127.0.0.1:10041", "unix:/tmp/relaykit-map"]
  socket_mode: "0660"
  metrics_listen: 127.0.0.1:9441
milter:
  listen: inet:127.0.0.1:10042
  on_error: tempfail
policy:
  store: memory
redis:
  address: 127.0.0.1:6379
  database: 2
  timeout_ms: 80
  key_prefix: "rk:"
)";
  Diagnostics diags;
  auto config = load(text, &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  EXPECT_EQ(diags.formatAll(), "");
  EXPECT_EQ(config->postfix->myorigin, "relay.corp.local");
  EXPECT_EQ(config->postfix->localDomains.size(), 2u);
  EXPECT_EQ(config->postfix->recipientDelimiter, "+");
  ASSERT_NE(config->findTable("generic"), nullptr);
  EXPECT_EQ(config->findTable("generic")->options().search, SearchMode::kAddress);
  EXPECT_EQ(config->findTable("generic")->sources().size(), 2u);
  EXPECT_EQ(config->findTable("transport")->options().search, SearchMode::kTransport);
  EXPECT_EQ(config->findTable("nope"), nullptr);
  ASSERT_EQ(config->socketmap.listen.size(), 2u);
  EXPECT_EQ(config->socketmap.listen[1].path, "/tmp/relaykit-map");
  ASSERT_TRUE(config->socketmap.socketMode.has_value());
  EXPECT_EQ(*config->socketmap.socketMode, 0660u);
  ASSERT_TRUE(config->socketmap.metricsListen.has_value());
  EXPECT_EQ(config->socketmap.metricsListen->port, 9441);
  EXPECT_EQ(config->milter.listen[0].port, 10042);
  EXPECT_TRUE(config->milterNode.IsMap());
  EXPECT_EQ(config->policy.listen[0].toString(), kDefaultPolicyListen);  // default
  EXPECT_TRUE(config->policyNode.IsMap());
  EXPECT_EQ(config->redis.database, 2);
  EXPECT_EQ(config->redis.timeout.count(), 80);
  EXPECT_EQ(config->redis.keyPrefix, "rk:");
  EXPECT_EQ(config->findTable("generic")->lookup("root@relay.corp.local").value(),
            "noreply@corp.com");
  EXPECT_EQ(config->findTable("generic")->lookup("x@srv12.corp.local").value(), "x@corp.com");
}

// Durations and sizes are checked before they are multiplied by their unit: the largest
// numbers the parsers accept would overflow int64/uint64 (999999999999w is ~6e20 ms).
TEST(ConfigTest, DurationAndSizeOverflowIsRefused) {
  auto week = parseDuration("999999999999w");
  ASSERT_FALSE(week);
  EXPECT_NE(week.status().message().find("too large"), std::string::npos);
  auto ms = parseDuration("999999999999ms");
  ASSERT_TRUE(ms);
  EXPECT_EQ(ms->count(), 999999999999LL);
  auto days = parseDuration("15250w");
  ASSERT_TRUE(days);
  EXPECT_EQ(days->count(), 15250LL * 7 * 86400 * 1000);
  auto size = parseSize("999999999999999G");
  ASSERT_FALSE(size);
  EXPECT_NE(size.status().message().find("too large"), std::string::npos);
  auto bytes = parseSize("1024G");
  ASSERT_TRUE(bytes);
  EXPECT_EQ(*bytes, 1024ULL * 1024 * 1024 * 1024);
}

TEST(ConfigTest, EmptyMapGivesDefaults) {
  Diagnostics diags;
  auto config = load("{}", &diags);
  ASSERT_NE(config, nullptr);
  EXPECT_EQ(config->socketmap.listen[0].toString(), kDefaultSocketmapListen);
  EXPECT_EQ(config->milter.listen[0].toString(), kDefaultMilterListen);
  EXPECT_EQ(config->policy.listen[0].toString(), kDefaultPolicyListen);
  EXPECT_FALSE(config->socketmap.metricsListen.has_value());
  EXPECT_FALSE(config->milterNode.IsDefined());
  EXPECT_TRUE(config->tables.empty());
}

TEST(ConfigTest, EmptyOrNullDocumentIsRefused) {
  const std::string sections = "(postfix, tables, socketmap, milter, policy, redis, health)";
  EXPECT_EQ(problems(""),
            "t.yaml:1:1: the configuration is empty (only blank lines or comments): "
            "expected a map of sections " +
                sections + "\n");
  EXPECT_EQ(problems("# only a comment\n\n   # another\n"),
            "t.yaml:1:1: the configuration is empty (only blank lines or comments): expected a "
            "map of sections " +
                sections + "\n");
  const std::string stopped =
      "YAML parsing stopped here: the text from here on would be ignored (a second document, or "
      "a line yaml-cpp cannot read; one document expected)\n";
  // yaml-cpp reads a first line with a lone ',' as a null document and stops there.
  EXPECT_EQ(problems(",\ntables:\n  t:\n    sources: [{entries: {a: b}}]\n"),
            "t.yaml:1:1: " + stopped);
  EXPECT_EQ(problems("# c\n  ~\n"), "t.yaml:2:3: expected a map of sections " + sections +
                                        ", got null: YAML parsing stopped here and the rest of "
                                        "the file would be ignored\n");
  EXPECT_EQ(problems("postfix: {}\n---\ntables: {}\n"), "t.yaml:2:1: " + stopped);
  EXPECT_NE(problems("!,\n"), "");
}

TEST(ConfigTest, HostlessEndpointsAreRefused) {
  EXPECT_EQ(problems("socketmap:\n  metrics_listen: \":9441\"\n"),
            "t.yaml:2:19: metrics_listen \":9441\" has no host and would listen on every "
            "interface: write 127.0.0.1:9441 (this host only), or 0.0.0.0:9441 / [::]:9441 to "
            "listen on every interface on purpose\n");
  EXPECT_EQ(problems("milter:\n  listen: [\"inet:127.0.0.1:1\", \"inet::10042\"]\n"),
            "t.yaml:2:32: listen \"inet::10042\" has no host and would listen on every "
            "interface: write 127.0.0.1:10042 (this host only), or 0.0.0.0:10042 / [::]:10042 to "
            "listen on every interface on purpose\n");
  EXPECT_EQ(problems("policy:\n  metrics_listen: 0.0.0.0:9443\nsocketmap:\n  listen: "
                     "\"inet:[::]:10041\"\n"),
            "t.yaml:4:11: warning: listen \"inet:[::]:10041\" listens on every interface: make "
            "sure a firewall keeps others out\n"
            "t.yaml:2:19: warning: metrics_listen \"0.0.0.0:9443\" listens on every interface: "
            "make sure a firewall keeps others out\n");
}

TEST(ConfigTest, UnknownTopLevelKey) {
  EXPECT_EQ(problems("postfix: {}\nsocketmapd:\n  listen: inet:1.2.3.4:1\n"),
            "t.yaml:2:1: unknown key \"socketmapd\" in the configuration (allowed: postfix, "
            "tables, socketmap, milter, policy, redis, health)\n");
}

TEST(ConfigTest, UnknownKeysInSections) {
  EXPECT_EQ(problems("socketmap:\n  listen: inet:127.0.0.1:1\n  usr: relaykit\n"),
            "t.yaml:3:3: unknown key \"usr\" in socketmap (allowed: listen, socket_mode, "
            "socket_owner, user, metrics_listen, allowed_users)\n");
  EXPECT_EQ(problems("tables:\n  t:\n    serch: exact\n    sources: [{entries: {a: b}}]\n"),
            "t.yaml:3:5: unknown key \"serch\" in table \"t\" (allowed: search, "
            "propagate_unmatched_extensions, sources)\n");
  EXPECT_EQ(problems("redis:\n  adress: x\n"),
            "t.yaml:2:3: unknown key \"adress\" in redis (allowed: address, database, "
            "password_file, timeout_ms, key_prefix, username, sentinels, master_name, "
            "sentinel_username, sentinel_password_file)\n");
}

TEST(ConfigTest, MilterAndPolicyKeysAreLeftToTheirComponents) {
  Diagnostics diags;
  auto config = load("milter:\n  anything: 1\n  user: nobody\npolicy:\n  store: redis\n", &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  EXPECT_EQ(config->milter.user, "nobody");
  EXPECT_TRUE(isCommonDaemonKey("metrics_listen"));
  EXPECT_FALSE(isCommonDaemonKey("on_error"));
  auto keys = allowedKeysWithDaemonKeys({"on_error"});
  ASSERT_EQ(keys.size(), 7u);
  EXPECT_EQ(keys[0], "on_error");
  EXPECT_EQ(keys[1], "listen");
}

TEST(ConfigTest, AllowedUsersAreResolvedAtLoad) {
  Diagnostics diags;
  auto config = load("policy:\n  allowed_users: [root, nobody]\n", &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  ASSERT_TRUE(config->policy.allowedUsers.has_value());
  EXPECT_EQ(config->policy.allowedUids.size(), 2u);
  EXPECT_EQ(config->policy.allowedUids[0], 0u);
  EXPECT_FALSE(config->socketmap.allowedUsers.has_value());
  EXPECT_EQ(problems("socketmap:\n  allowed_users: [no-such-user-relaykit]\n"),
            "t.yaml:2:18: allowed_users: unknown user \"no-such-user-relaykit\"\n");
}

TEST(ConfigTest, WrongTypes) {
  EXPECT_EQ(problems("postfix:\n  local_domains: {a: b}\n  parent_domain_matches_subdomains: "
                     "maybe\n  recipient_delimiter: [a]\n"),
            "t.yaml:2:18: expected a string or a list of strings, got a map\n"
            "t.yaml:4:24: expected a string, got a list\n"
            "t.yaml:3:37: expected true or false, got \"maybe\"\n");
  EXPECT_EQ(problems("tables: [a, b]\n"), "t.yaml:1:9: expected a map for tables, got a list\n");
  EXPECT_EQ(problems("redis:\n  database: two\n  timeout_ms: 0\n"),
            "t.yaml:2:13: expected an integer, got \"two\"\n"
            "t.yaml:3:15: value 0 out of range (1..60000)\n");
  EXPECT_EQ(problems("socketmap:\n  socket_mode: \"0990\"\n  user: [a]\n"),
            "t.yaml:2:16: invalid file mode \"0990\" (expected octal digits like \"0660\")\n"
            "t.yaml:3:9: expected a string, got a list\n");
}

TEST(ConfigTest, EveryProblemIsReportedAtOnce) {
  const std::string text =
      "tables:\n"
      "  a:\n"
      "    search: fuzzy\n"
      "    sources: [{entries: {k: v}}]\n"
      "  b:\n"
      "    sources: []\n"
      "  c:\n"
      "    sources:\n"
      "      - entries: {k: ~}\n"
      "      - hash: /etc/x\n"
      "socketmap:\n"
      "  listen: [\"inet:127.0.0.1:1\", \"tcp:1.2.3.4:5\"]\n"
      "bogus: 1\n";
  EXPECT_EQ(problems(text),
            "t.yaml:13:1: unknown key \"bogus\" in the configuration (allowed: postfix, tables, "
            "socketmap, milter, policy, redis, health)\n"
            "t.yaml:3:13: unknown search \"fuzzy\" (allowed: exact, address, transport, sender)\n"
            "t.yaml:6:14: expected a non-empty list of sources for table \"b\", got a list\n"
            "t.yaml:9:22: expected a string, got null\n"
            "t.yaml:10:9: unknown key \"hash\" in source (allowed: entries, regexp, pcre, file)\n"
            "t.yaml:12:32: invalid endpoint \"tcp:1.2.3.4:5\": expected inet:HOST:PORT, "
            "inet:[ADDR]:PORT or unix:PATH\n");
}

TEST(ConfigTest, DuplicateKeys) {
  EXPECT_EQ(problems("tables:\n  t:\n    sources:\n      - entries:\n          a: x\n          a: "
                     "y\n"),
            "t.yaml:6:11: duplicate key \"a\" in entries\n");
}

TEST(ConfigTest, BadRegexpPointsIntoTheBlockScalar) {
  const std::string text =
      "tables:\n"
      "  generic:\n"
      "    sources:\n"
      "      - regexp: |\n"
      "          /^a$/ ok\n"
      "          /^(b$/ bad\n";
  std::string out = problems(text);
  // Line 6 is the bad rule (second line of the block text, which starts on line 5).
  EXPECT_EQ(out.rfind("t.yaml:6:11:", 0), 0u) << out;
  EXPECT_NE(out.find("invalid regular expression"), std::string::npos) << out;
}

TEST(ConfigTest, RegexpErrorOnFirstBlockLineHasTheRightColumn) {
  const std::string text =
      "tables:\n"
      "  generic:\n"
      "    sources:\n"
      "      - regexp: |\n"
      "          /^(b$/ bad\n";
  std::string out = problems(text);
  EXPECT_EQ(out.rfind("t.yaml:5:11:", 0), 0u) << out;
}

TEST(ConfigTest, TransportAndSenderTablesRefuseSubstitution) {
  const std::string text =
      "tables:\n"
      "  transport:\n"
      "    search: transport\n"
      "    sources:\n"
      "      - regexp: |\n"
      "          /^(.*)$/ smtp:[$1]\n"
      "  generic:\n"
      "    search: address\n"
      "    sources:\n"
      "      - regexp: |\n"
      "          /^(.*)@x$/ $1@y\n";
  std::string out = problems(text);
  EXPECT_EQ(out.rfind("t.yaml:6:", 0), 0u) << out;
  EXPECT_NE(out.find("substitution is not allowed"), std::string::npos) << out;
  EXPECT_EQ(out.find("t.yaml:11:"), std::string::npos) << out;
}

TEST(ConfigTest, InvalidTableName) {
  EXPECT_EQ(problems("tables:\n  \"a b\":\n    sources: [{entries: {k: v}}]\n"),
            "t.yaml:2:3: invalid table name \"a b\": a socketmap map name cannot contain spaces, "
            "':' or ','\n");
}

TEST(ConfigTest, MissingSources) {
  EXPECT_EQ(problems("tables:\n  t:\n    search: exact\n"),
            "t.yaml:2:3: table \"t\" has no sources\n");
}

TEST(ConfigTest, YamlSyntaxErrorHasALocation) {
  std::string out = problems("tables:\n  t: [a, b\n");
  EXPECT_EQ(out.rfind("t.yaml:", 0), 0u) << out;
  EXPECT_EQ(out.rfind("t.yaml:0:", 0), std::string::npos) << out;
}

TEST(ConfigTest, MissingFile) {
  Diagnostics diags;
  auto config = loadConfig("/nonexistent/relaykit.yaml", &diags);
  EXPECT_EQ(config, nullptr);
  EXPECT_EQ(diags.formatAll(),
            "/nonexistent/relaykit.yaml:0:0: cannot read configuration: No such file or "
            "directory\n");
}

TEST(ConfigTest, LoadsFromFile) {
  char path[] = "/tmp/relaykit-config-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "socketmap:\n  listen: inet:127.0.0.1:0\n  bad: 1\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  Diagnostics diags;
  auto config = loadConfig(path, &diags);
  EXPECT_EQ(config, nullptr);
  EXPECT_EQ(diags.formatAll(),
            std::string(path) +
                ":3:3: unknown key \"bad\" in socketmap (allowed: listen, "
                "socket_mode, socket_owner, user, metrics_listen, allowed_users)\n");
  unlink(path);
}

// ---- YamlReader helpers, as the milter/policy parsers use them ----

class YamlReaderTest : public ::testing::Test {
 protected:
  YAML::Node parse(const std::string& text) {
    text_ = text;
    auto node = parseYamlText(text, "r.yaml", &diags_);
    EXPECT_TRUE(node.has_value());
    return *node;
  }
  Diagnostics diags_;
  std::string text_;
};

TEST_F(YamlReaderTest, Durations) {
  YAML::Node n = parse("a: 1m\nb: 30s\nc: 1h\nd: 1d\ne: 250ms\nf: 10\ng: 1x\nh: 0s\n");
  YamlReader r("r.yaml", &diags_, text_);
  std::chrono::milliseconds v{0};
  EXPECT_TRUE(r.getDuration(n, "a", &v));
  EXPECT_EQ(v.count(), 60000);
  EXPECT_TRUE(r.getDuration(n, "b", &v));
  EXPECT_EQ(v.count(), 30000);
  EXPECT_TRUE(r.getDuration(n, "c", &v));
  EXPECT_EQ(v.count(), 3600000);
  EXPECT_TRUE(r.getDuration(n, "d", &v));
  EXPECT_EQ(v.count(), 86400000);
  EXPECT_TRUE(r.getDuration(n, "e", &v));
  EXPECT_EQ(v.count(), 250);
  EXPECT_TRUE(r.getDuration(n, "f", &v));
  EXPECT_EQ(v.count(), 10000);
  EXPECT_TRUE(r.getDuration(n, "absent", &v));
  EXPECT_EQ(v.count(), 10000);
  EXPECT_FALSE(r.getDuration(n, "g", &v));
  EXPECT_FALSE(r.getDuration(n, "h", &v));
  EXPECT_EQ(diags_.formatAll(),
            "r.yaml:7:4: invalid duration \"1x\" (expected a number with unit ms, s, m, h, d or "
            "w, like 30s)\n"
            "r.yaml:8:4: duration must be greater than zero\n");
}

TEST_F(YamlReaderTest, SizesListsNetworksModes) {
  YAML::Node n = parse(
      "size: 10M\nbadsize: 10Q\none: x\nlist: [x, y]\nnets: [10.0.0.0/8, \"::1\", 300.1.1.1]\n"
      "mode: 0660\n");
  YamlReader r("r.yaml", &diags_, text_);
  std::uint64_t size = 0;
  EXPECT_TRUE(r.getSize(n, "size", &size));
  EXPECT_EQ(size, 10u * 1024 * 1024);
  EXPECT_FALSE(r.getSize(n, "badsize", &size));
  std::vector<std::string> list;
  EXPECT_TRUE(r.getStringList(n, "one", &list));
  EXPECT_EQ(list, std::vector<std::string>{"x"});
  EXPECT_TRUE(r.getStringList(n, "list", &list));
  EXPECT_EQ(list.size(), 2u);
  std::vector<IpNetwork> nets;
  EXPECT_FALSE(r.getNetworks(n, "nets", &nets));
  std::uint32_t mode = 0;
  EXPECT_TRUE(r.getOctalMode(n, "mode", &mode));
  EXPECT_EQ(mode, 0660u);
  EXPECT_EQ(diags_.formatAll(),
            "r.yaml:2:10: invalid size \"10Q\" (expected a number of bytes with optional unit k, "
            "M or G, like 10M)\n"
            "r.yaml:5:27: invalid network \"300.1.1.1\"\n");
}

TEST_F(YamlReaderTest, CheckMapListsAllowedKeys) {
  YAML::Node n = parse("milter:\n  on_eror: accept\n  listen: inet:127.0.0.1:1\n");
  YamlReader r("r.yaml", &diags_, text_);
  EXPECT_FALSE(r.checkMap(n["milter"], "milter", {"a", "b", "c"}));
  EXPECT_EQ(diags_.formatAll(),
            "r.yaml:2:3: unknown key \"on_eror\" in milter (allowed: a, b, c)\n"
            "r.yaml:3:3: unknown key \"listen\" in milter (allowed: a, b, c)\n");
}

TEST_F(YamlReaderTest, TextLocationOfScalars) {
  YAML::Node n = parse("a: |\n    x\nb: \"q\"\nc: plain\nd: |\n\n  y\n");
  YamlReader r("r.yaml", &diags_, text_);
  SourceLocation a = r.textLocation(n["a"]);
  EXPECT_EQ(a.line, 2);
  EXPECT_EQ(a.column, 5);
  SourceLocation b = r.textLocation(n["b"]);
  EXPECT_EQ(b.line, 3);
  EXPECT_EQ(b.column, 5);
  SourceLocation c = r.textLocation(n["c"]);
  EXPECT_EQ(c.line, 4);
  EXPECT_EQ(c.column, 4);
  SourceLocation d = r.textLocation(n["d"]);
  EXPECT_EQ(d.line, 6);  // the text (with its leading empty line) starts right after the '|'
  EXPECT_EQ(d.column, 3);
}

TEST_F(YamlReaderTest, ChildOfNonMapIsUndefinedNotAThrow) {
  YAML::Node n = parse("a: scalar\n");
  EXPECT_FALSE(YamlReader::child(n["a"], "x").IsDefined());
  EXPECT_FALSE(YamlReader::child(n, "missing").IsDefined());
  YamlReader r("r.yaml", &diags_, text_);
  std::string s = "keep";
  EXPECT_TRUE(r.getString(n["a"], "x", &s));
  EXPECT_EQ(s, "keep");
}

TEST(ValueParsersTest, Integers) {
  EXPECT_EQ(*parseInteger("42"), 42);
  EXPECT_EQ(*parseInteger("-7"), -7);
  EXPECT_FALSE(parseInteger("").isOk());
  EXPECT_FALSE(parseInteger("4 2").isOk());
  EXPECT_FALSE(parseInteger("99999999999999999999").isOk());
}

}  // namespace
}  // namespace relaykit

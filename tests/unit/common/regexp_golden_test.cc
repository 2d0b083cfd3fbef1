// SPDX-License-Identifier: Apache-2.0
// regexp_golden_test.cc: golden files under tests/golden/regexp/ (table, keys, expected answers
// taken from Postfix 3.7's postmap, expected diagnostics), and a live cross-check of every
// error-free table against the installed postmap (skipped when /usr/sbin/postmap is missing).
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "common/regexp_table.h"
#include "common/table_file.h"
#include "tests/unit/common/random_regexp_table.h"

namespace relaykit {
namespace {

const std::string kGoldenDir = std::string(RELAYKIT_SOURCE_DIR) + "/tests/golden/regexp";
constexpr const char* kPostmap = "/usr/sbin/postmap";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    out.push_back(l);
  }
  return out;
}

std::vector<std::string> goldenNames() {
  std::vector<std::string> names;
  if (DIR* d = opendir(kGoldenDir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      const std::string ext = ".regexp";
      if (n.size() > ext.size() && n.compare(n.size() - ext.size(), ext.size(), ext) == 0) {
        names.push_back(n.substr(0, n.size() - ext.size()));
      }
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::unique_ptr<RegexpTable> parseGolden(const std::string& name, Diagnostics* d) {
  const std::string text = slurp(kGoldenDir + "/" + name + ".regexp");
  return RegexpTable::parse(text, {name + ".regexp", 1, 0}, {RegexpDialect::kPosix, true}, d);
}

// Runs `postmap -q - regexp:FILE` with `keys` on stdin; returns key -> value for found keys.
bool runPostmap(const std::string& file, const std::vector<std::string>& keys,
                std::map<std::string, std::string>* out) {
  char confDir[] = "/tmp/relaykit_postmap_XXXXXX";
  if (mkdtemp(confDir) == nullptr) {
    return false;
  }
  const std::string conf = std::string(confDir) + "/main.cf";
  std::ofstream(conf) << "";
  // A main.cf modified this very second makes postmap wait ~1.5 s for it to settle: backdate.
  struct utimbuf old;
  old.actime = old.modtime = time(nullptr) - 10;
  utime(conf.c_str(), &old);
  const std::string keyFile = std::string(confDir) + "/keys";
  {
    std::ofstream k(keyFile);
    for (const auto& key : keys) {
      k << key << "\n";
    }
  }
  const std::string cmd = std::string(kPostmap) + " -c " + confDir + " -q - regexp:" + file +
                          " < " + keyFile + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return false;
  }
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    output.append(buf, n);
  }
  pclose(p);
  for (const auto& l : lines(output)) {
    const size_t tab = l.find('\t');
    if (tab != std::string::npos) {
      (*out)[l.substr(0, tab)] = l.substr(tab + 1);
    }
  }
  unlink(keyFile.c_str());
  unlink(conf.c_str());
  rmdir(confDir);
  return true;
}

std::string answer(const RegexpTable& t, const std::string& key) {
  auto m = t.match(key);
  return m ? m->value : "NOTFOUND";
}

// A new temporary file holding `text`; its path, or "" when it cannot be created.
std::string tempFileWith(const std::string& text) {
  char path[] = "/tmp/relaykit_table_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    return "";
  }
  close(fd);
  std::ofstream(path) << text;
  return path;
}

// Writes `text` to a temporary regexp table, parses it and asks the real postmap for every key:
// each answer must be the same. *compared counts the keys compared.
void expectAgreesWithPostmap(const std::string& text, const std::vector<std::string>& keys,
                             int* compared) {
  const std::string path = tempFileWith(text);
  ASSERT_FALSE(path.empty());
  Diagnostics d;
  auto table = RegexpTable::parse(text, {path, 1, 0}, {RegexpDialect::kPosix, true}, &d);
  ASSERT_NE(table, nullptr) << d.formatAll();
  std::map<std::string, std::string> real;
  ASSERT_TRUE(runPostmap(path, keys, &real));
  unlink(path.c_str());
  for (const auto& key : keys) {
    const auto it = real.find(key);
    EXPECT_EQ(answer(*table, key), it == real.end() ? "NOTFOUND" : it->second)
        << "key " << key << " table:\n"
        << text;
    ++*compared;
  }
}

TEST(RegexpGoldenTest, FilesMatch) {
  const auto names = goldenNames();
  ASSERT_FALSE(names.empty()) << kGoldenDir;
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    Diagnostics d;
    auto table = parseGolden(name, &d);
    EXPECT_EQ(d.formatAll(), slurp(kGoldenDir + "/" + name + ".diagnostics"));
    if (table == nullptr) {
      continue;
    }
    const auto keys = lines(slurp(kGoldenDir + "/" + name + ".keys"));
    const auto expected = lines(slurp(kGoldenDir + "/" + name + ".expected"));
    ASSERT_EQ(keys.size(), expected.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      EXPECT_EQ(keys[i] + "\t" + answer(*table, keys[i]), expected[i]);
    }
  }
}

TEST(RegexpGoldenTest, AgreesWithPostmap) {
  if (access(kPostmap, X_OK) != 0) {
    GTEST_SKIP() << "no " << kPostmap;
  }
  for (const auto& name : goldenNames()) {
    SCOPED_TRACE(name);
    Diagnostics d;
    auto table = parseGolden(name, &d);
    if (table == nullptr) {
      continue;
    }
    const auto keys = lines(slurp(kGoldenDir + "/" + name + ".keys"));
    std::map<std::string, std::string> real;
    ASSERT_TRUE(runPostmap(kGoldenDir + "/" + name + ".regexp", keys, &real));
    for (const auto& key : keys) {
      const auto it = real.find(key);
      EXPECT_EQ(answer(*table, key), it == real.end() ? "NOTFOUND" : it->second) << key;
    }
  }
}

// A generated corpus: many rules of assorted shapes, keys that hit them in various ways.
TEST(RegexpGoldenTest, GeneratedCorpusAgreesWithPostmap) {
  if (access(kPostmap, X_OK) != 0) {
    GTEST_SKIP() << "no " << kPostmap;
  }
  std::string text;
  std::vector<std::string> keys;
  const char* domains[] = {"example.com", "Corp.Local", "srv1.corp.local", "x.org"};
  for (int i = 0; i < 60; ++i) {
    const std::string n = std::to_string(i);
    switch (i % 6) {
      case 0:
        text += "/^user" + n + "@(.*)$/ r" + n + "-$1\n";
        break;
      case 1:
        text += "/^USER" + n + "[+-]([a-z]*)@/i r" + n + "-case-$1\n";
        break;
      case 2:
        text +=
            "if /corp\\.local$/\n/^(u|us|use)(er" + n + "|r" + n + ")@/ r" + n + "-$1-$2\nendif\n";
        break;
      case 3:
        text += "!/^[a-m]/ r" + n + "-neg\n";
        break;
      case 4:
        text += "/^(a|b)+" + n + "(x{1,2})?$/ r" + n + "-$1-$2\n";
        break;
      default:
        text += "/" + n + "$/ r" + n + "-tail\n";
        break;
    }
    for (const char* dom : domains) {
      keys.push_back("user" + n + "@" + dom);
      keys.push_back("User" + n + "+Tag@" + dom);
      keys.push_back("USER" + n + "-x@" + dom);
    }
    keys.push_back("abab" + n + "xx");
    keys.push_back("ab" + n);
    keys.push_back("zz" + n);
  }
  int compared = 0;
  expectAgreesWithPostmap(text, keys, &compared);
  EXPECT_GT(compared, 500);
}

// Random tables mixing if/endif (nested, negated), negation, second patterns and flags,
// evaluated by us and by postmap on the same keys.
TEST(RegexpGoldenTest, RandomTablesAgreeWithPostmap) {
  if (access(kPostmap, X_OK) != 0) {
    GTEST_SKIP() << "no " << kPostmap;
  }
  std::mt19937 rng(4242);
  const char* atoms[] = {"a", "b", "ab", "^a", "b$", "[ab]c", "c+", "(a|b)c", "x", "A", "."};
  const int natoms = sizeof(atoms) / sizeof(atoms[0]);
  for (int round = 0; round < 5; ++round) {
    std::string text = randomRegexpTable(rng, atoms, natoms, true);
    std::vector<std::string> keys;
    for (int k = 0; k < 150; ++k) {
      std::string key;
      const int len = 1 + static_cast<int>(rng() % 5);
      for (int j = 0; j < len; ++j) {
        key.push_back("abcxAB"[rng() % 6]);
      }
      keys.push_back(key);
    }
    int compared = 0;
    expectAgreesWithPostmap(text, keys, &compared);
  }
}

}  // namespace
}  // namespace relaykit

namespace relaykit {
namespace {

// postmap source parsing (texthash) against the real postmap: same keys found, same values.
TEST(PostmapSourceTest, AgreesWithPostmapTexthash) {
  if (access(kPostmap, X_OK) != 0) {
    GTEST_SKIP() << "no " << kPostmap;
  }
  const std::string text =
      "Foo@Example.com  bar1\n"
      "foo@example.com bar2\n"
      "# comment\n"
      "  # indented comment\n"
      "multi  line1\n"
      "\tline2\n"
      "\n"
      "  line3\n"
      "novalue\n"
      "\"a b\"@x quoted value  \n"
      "a\"b c\"d val2\n"
      "\"open val\n"
      "key: colon\n"
      "@Domain.Example  @other.example\n";
  const std::string path = tempFileWith(text);
  ASSERT_FALSE(path.empty());
  Diagnostics d;
  const auto entries = parsePostmapSource(text, {path, 1, 0}, &d);
  IndexedSource source("texthash", entries);
  const std::vector<std::string> keys = {
      "foo@example.com", "FOO@EXAMPLE.COM", "multi", "novalue",         "\"a b\"@x",
      "a\"b c\"d",       "\"open",          "key:",  "@domain.example", "nothing"};
  // postmap -q folds the key like the table does.
  std::map<std::string, std::string> real;
  char confDir[] = "/tmp/relaykit_postmap_XXXXXX";
  ASSERT_NE(mkdtemp(confDir), nullptr);
  const std::string conf = std::string(confDir) + "/main.cf";
  std::ofstream(conf) << "";
  struct utimbuf old;
  old.actime = old.modtime = time(nullptr) - 10;
  utime(conf.c_str(), &old);
  utime(path.c_str(), &old);
  for (const auto& key : keys) {
    const std::string cmd = std::string(kPostmap) + " -c " + confDir + " -q '" + key +
                            "' texthash:" + path + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
      out.append(buf, n);
    }
    if (pclose(p) == 0) {
      if (!out.empty() && out.back() == '\n') {
        out.pop_back();
      }
      real[key] = out;
    }
  }
  unlink(conf.c_str());
  rmdir(confDir);
  unlink(path.c_str());
  for (const auto& key : keys) {
    const LookupResult r = source.lookup(key);
    const auto it = real.find(key);
    EXPECT_EQ(r.isFound() ? r.value() : "NOTFOUND", it == real.end() ? "NOTFOUND" : it->second)
        << key;
  }
}

}  // namespace
}  // namespace relaykit

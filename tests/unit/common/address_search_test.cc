// SPDX-License-Identifier: Apache-2.0
// address_search_test.cc: every search mode is linear in the key, in time and in memory (a
// transport key "x@" followed by thousands of dots once built one string per parent domain).
#include "common/address_search.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/table.h"

namespace relaykit {
namespace {

std::size_t heapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

PostfixSettings postfixSettings(bool pdms) {
  PostfixSettings s;
  s.localDomains = {"localhost"};
  s.recipientDelimiter = "+";
  s.parentDomainMatchesSubdomains = pdms;
  return s;
}

std::unique_ptr<TableSource> entries(std::vector<std::pair<std::string, std::string>> kv) {
  std::vector<TableEntry> list;
  for (auto& [k, v] : kv) {
    list.push_back(TableEntry{k, v, SourceLocation{"y", 1, 1}});
  }
  Diagnostics d;
  auto s = makeEntriesSource(list, &d);
  EXPECT_NE(s, nullptr) << d.formatAll();
  return s;
}

constexpr std::size_t kDots = 20000;

TEST(AddressSearchLinearTest, PlanMemoryIsLinearInTheKeyInEveryMode) {
  const std::string dotted = "x@" + std::string(kDots, '.');
  const std::string labels = [] {
    std::string k = "u+e@";
    for (std::size_t i = 0; i < kDots / 2; ++i) {
      k += "a.";
    }
    return k + "com";
  }();
  for (bool pdms : {false, true}) {
    const PostfixSettings postfix = postfixSettings(pdms);
    for (SearchMode mode :
         {SearchMode::kExact, SearchMode::kAddress, SearchMode::kSender, SearchMode::kTransport}) {
      for (const std::string* key : {&dotted, &labels}) {
        const std::size_t before = heapInUse();
        const SearchPlan plan = planSearch(mode, *key, postfix);
        const std::size_t used = heapInUse() - before;
        // A few copies of the key plus one small SearchKey per parent domain.
        EXPECT_LT(used, 128 * key->size())
            << "mode " << static_cast<int>(mode) << " pdms " << pdms << " key size " << key->size();
        EXPECT_LT(plan.keys.size(), key->size() + 16);
      }
    }
  }
}

TEST(AddressSearchLinearTest, TransportSearchOfManyDotsIsFast) {
  TableOptions options;
  options.search = SearchMode::kTransport;
  std::vector<std::unique_ptr<TableSource>> sources;
  sources.push_back(entries({{".", "smtp:dot"}, {"..", "smtp:twodots"}, {"*", "smtp:any"}}));
  Table table("t", options, std::move(sources),
              std::make_shared<const PostfixSettings>(postfixSettings(false)));
  const std::string key = "x@" + std::string(30000, '.');
  const auto started = std::chrono::steady_clock::now();
  LookupResult r = table.lookup(key);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  // ".." is the second-to-last parent form: every longer parent was tried before it.
  ASSERT_TRUE(r.isFound());
  EXPECT_EQ(r.value(), "smtp:twodots");
  EXPECT_LT(elapsed, std::chrono::milliseconds(250));
}

TEST(AddressSearchLinearTest, LongestKeyIsBounded) {
  TableOptions options;
  options.search = SearchMode::kTransport;
  std::vector<std::unique_ptr<TableSource>> sources;
  sources.push_back(entries({{"*", "smtp:any"}}));
  Table table("t", options, std::move(sources),
              std::make_shared<const PostfixSettings>(postfixSettings(false)));
  EXPECT_TRUE(table.lookup("x@" + std::string(kMaxLookupKeyBytes - 2, 'a')).isFound());
  LookupResult r = table.lookup("x@" + std::string(kMaxLookupKeyBytes, 'a'));
  EXPECT_EQ(r.kind(), LookupResult::Kind::kPermError);
}

TEST(AddressSearchLinearTest, FoldedParentsMatchLikeUnfolded) {
  TableOptions options;
  options.search = SearchMode::kTransport;
  std::vector<std::unique_ptr<TableSource>> sources;
  sources.push_back(entries({{".straße.example", "smtp:sub"}, {"münchen.de", "smtp:pdms"}}));
  Table table("t", options, std::move(sources),
              std::make_shared<const PostfixSettings>(postfixSettings(false)));
  LookupResult r = table.lookup("u@MAIL.STRASSE.Example");
  ASSERT_TRUE(r.isFound());
  EXPECT_EQ(r.value(), "smtp:sub");
  EXPECT_TRUE(table.lookup("u@a.MÜNCHEN.de").isNotFound());

  std::vector<std::unique_ptr<TableSource>> pdmsSources;
  pdmsSources.push_back(entries({{"münchen.de", "smtp:pdms"}}));
  Table pdms("p", options, std::move(pdmsSources),
             std::make_shared<const PostfixSettings>(postfixSettings(true)));
  r = pdms.lookup("u@Ä.ẞ.MÜNCHEN.DE");
  ASSERT_TRUE(r.isFound());
  EXPECT_EQ(r.value(), "smtp:pdms");
}

}  // namespace
}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// address_search_fuzz.cc: Postfix's partial-key searches (common/address_search.h) and a small
// table searched with them (common/table.h), in every search mode.
// Input: [mode/settings byte] key NUL result value. Properties: every plan starts with the full
// key form and is linear in the key (what it owns at most kMaxPlanBytesPerKeyByte bytes per key
// byte, plus a constant; at most two key forms per key byte); a found value is never empty; the
// result processing (finishAddressResult) never fails.
#include <memory>
#include <string>
#include <vector>

#include "common/address_search.h"
#include "common/diagnostics.h"
#include "common/table.h"
#include "tests/fuzz/fuzz_support.h"

using namespace relaykit;
using relaykit::fuzz::printable;

namespace {

// The owned strings are a few copies of the key; a transport key has one form per dot (each a
// SearchKey: a view and flags, ~40 bytes, with the vector's growth slack on top).
constexpr size_t kMaxPlanBytesPerKeyByte = 128;
constexpr size_t kMaxPlanBytesConstant = 256;

constexpr SearchMode kModes[] = {SearchMode::kExact, SearchMode::kAddress, SearchMode::kTransport,
                                 SearchMode::kSender};

std::shared_ptr<const PostfixSettings> settings(int variant) {
  auto s = std::make_shared<PostfixSettings>();
  s->localDomains = {"relay.corp.local", "[127.0.0.1]"};
  if (variant == 0) {
    s->myorigin = "relay.corp.local";
    s->recipientDelimiter = "+";
  } else {
    s->recipientDelimiter = "+-";
    s->parentDomainMatchesSubdomains = true;
    s->smtputf8Enable = false;
  }
  return s;
}

std::unique_ptr<Table> makeTable(SearchMode mode, int variant) {
  Diagnostics diags;
  std::vector<std::unique_ptr<TableSource>> sources;
  std::vector<TableEntry> entries = {
      {"root@relay.corp.local", "noreply@corp.com", {}},
      {"@old.corp.local", "@corp.com", {}},
      {"postmaster", "pm@corp.com", {}},
      {"user+ext@relay.corp.local", "ext@corp.com", {}},
      {"corp.local", "smtp:[a]", {}},
      {".corp.local", "smtp:[b]", {}},
      {"*", "smtp:[c]", {}},
      {"<>", "[bounces]", {}},
      {"j\xC3\xB6rg@relay.corp.local", "joerg@corp.com", {}},
  };
  sources.push_back(makeEntriesSource(entries, &diags, variant == 0));
  sources.push_back(makeRegexpSource("/^(.*)@srv[0-9]+\\.corp\\.local$/ ${1}@corp.com\n/^empty@/\n",
                                     {"fuzz", 1, 0}, RegexpDialect::kPosix, true, &diags));
  FUZZ_CHECK(!diags.hasErrors(), diags.formatAll());
  TableOptions options;
  options.search = mode;
  options.propagateUnmatchedExtensions = variant == 1;
  return std::make_unique<Table>("fuzz", options, std::move(sources), settings(variant));
}

const Table& table(int mode, int variant) {
  static std::unique_ptr<Table> tables[4][2];
  if (!tables[mode][variant]) {
    tables[mode][variant] = makeTable(kModes[mode], variant);
  }
  return *tables[mode][variant];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::uint8_t flags = in.byte();
  int variant = flags & 1;
  std::string_view key = in.text();
  std::string_view value = in.rest();
  std::shared_ptr<const PostfixSettings> postfix = settings(variant);
  for (int mode = 0; mode < 4; ++mode) {
    SearchPlan plan = planSearch(kModes[mode], key, *postfix);
    FUZZ_CHECK(!plan.keys.empty() && plan.keys.front().full, "plan for " + printable(key));
    // Key forms are views into strings the plan owns (parent domains of a transport key are
    // suffixes of one string): what must stay linear is what the plan owns and how many forms
    // it has, not the sum of the views' lengths.
    const size_t planBytes = plan.ownedBytes();
    FUZZ_CHECK(planBytes <= kMaxPlanBytesPerKeyByte * key.size() + kMaxPlanBytesConstant,
               "plan owns " + std::to_string(planBytes) + " bytes for a key of " +
                   std::to_string(key.size()));
    FUZZ_CHECK(
        plan.keys.size() <= 2 * key.size() + 16,
        std::to_string(plan.keys.size()) + " key forms for a key of " + std::to_string(key.size()));
    if (!value.empty()) {
      for (const SearchKey& k : plan.keys) {
        (void)finishAddressResult(value, plan, k, (flags & 2) != 0);
      }
    }
    LookupResult r = table(mode, variant).lookup(key);
    if (r.isFound()) {
      FUZZ_CHECK(!r.value().empty(), "found an empty value for " + printable(key));
    }
  }
  return 0;
}

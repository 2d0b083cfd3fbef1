// SPDX-License-Identifier: Apache-2.0
// table.cc: a Table searches its sources with Postfix's partial-key rules (see table.h and
// address_search.h), plus the factories for in-memory sources.
//
// An empty value never leaves a Table as Found: a source that answers "" (a regexp rule without
// result text) ends the search with a temporary error, as Postfix's maps_find() does (and a
// socketmap must not answer "OK " with empty data).
#include "common/table.h"

#include <unordered_map>

#include "common/address.h"
#include "common/address_search.h"
#include "common/casefold.h"
#include "common/table_file.h"

namespace relaykit {

Table::Table(std::string name, TableOptions options,
             std::vector<std::unique_ptr<TableSource>> sources,
             std::shared_ptr<const PostfixSettings> postfix)
    : name_(std::move(name)),
      options_(options),
      sources_(std::move(sources)),
      postfix_(postfix ? std::move(postfix) : std::make_shared<const PostfixSettings>()) {}

LookupResult Table::lookup(std::string_view key) const {
  if (postfix_->smtputf8Enable && !isValidUtf8(key)) {
    return LookupResult::notFound();  // Postfix's dict_utf8 layer never asks any table
  }
  if (key.size() > kMaxLookupKeyBytes) {
    return LookupResult::permError("key longer than " + std::to_string(kMaxLookupKeyBytes) +
                                   " bytes");
  }
  const SearchPlan plan = planSearch(options_.search, key, *postfix_);
  for (const SearchKey& form : plan.keys) {
    for (const auto& source : sources_) {
      if (source->isPattern() && !form.full) {
        continue;
      }
      LookupResult r = form.prefolded
                           ? source->lookupFolded(form.key, form.folded, postfix_->smtputf8Enable)
                           : source->lookup(form.key);
      if (r.isNotFound()) {
        continue;
      }
      if (r.isError()) {
        return r;
      }
      if (r.value().empty()) {
        return LookupResult::tempError(source->describe() + " lookup of \"" +
                                       std::string(form.key) + "\" returns an empty string result");
      }
      if (options_.search == SearchMode::kAddress) {
        return LookupResult::found(
            finishAddressResult(r.value(), plan, form, options_.propagateUnmatchedExtensions));
      }
      return r;
    }
  }
  return LookupResult::notFound();
}

std::unique_ptr<TableSource> makeEntriesSource(const std::vector<TableEntry>& entries,
                                               Diagnostics* diags, bool smtputf8) {
  std::unordered_map<std::string, std::string> map;
  std::unordered_map<std::string, SourceLocation> firstSeen;
  bool failed = false;
  for (const TableEntry& e : entries) {
    if (e.key.empty()) {
      diags->error(e.where, "empty key");
      failed = true;
      continue;
    }
    if (e.value.empty()) {
      diags->error(e.where, "empty value for key \"" + e.key + "\"");
      failed = true;
      continue;
    }
    if (smtputf8 && (!isValidUtf8(e.key) || !isValidUtf8(e.value))) {
      diags->error(e.where, "key \"" + e.key +
                                "\" or its value is not UTF-8 (postfix.smtputf8_enable is on; "
                                "Postfix would ignore this entry)");
      failed = true;
      continue;
    }
    std::string folded = *foldTableKey(e.key, smtputf8);
    const auto seen = firstSeen.find(folded);
    if (seen != firstSeen.end()) {
      diags->error(e.where, "duplicate key \"" + e.key +
                                "\" (keys are case-insensitive; first at line " +
                                std::to_string(seen->second.line) + ")");
      failed = true;
      continue;
    }
    firstSeen.emplace(folded, e.where);
    map.emplace(std::move(folded), e.value);
  }
  if (failed) {
    return nullptr;
  }
  return std::make_unique<IndexedSource>("entries", std::move(map), smtputf8);
}

std::unique_ptr<TableSource> makeRegexpSource(std::string_view text, const SourceLocation& origin,
                                              RegexpDialect dialect, bool allowSubstitution,
                                              Diagnostics* diags) {
  RegexpTable::Options options{dialect, allowSubstitution};
  auto table = RegexpTable::parse(text, origin, options, diags);
  if (table == nullptr) {
    return nullptr;
  }
  return std::make_unique<RegexpSource>(dialect == RegexpDialect::kPosix ? "regexp" : "pcre",
                                        std::move(table));
}

}  // namespace relaykit

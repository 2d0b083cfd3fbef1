// SPDX-License-Identifier: Apache-2.0
// table_file.cc: postmap source parsing, indexed sources and loading Postfix table files.
#include "common/table_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "common/address.h"
#include "common/bounded_file.h"
#include "common/casefold.h"
#include "common/logical_lines.h"

namespace relaykit {
namespace {

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && isSpace(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

IndexedSource::IndexedSource(std::string description,
                             std::unordered_map<std::string, std::string> entries, bool smtputf8)
    : description_(std::move(description)), entries_(std::move(entries)), smtputf8_(smtputf8) {
  std::size_t longest = 0;
  for (const auto& entry : entries_) {
    longest = std::max(longest, entry.first.size());
  }
  hasKeyLength_.assign(longest + 1, false);
  for (const auto& entry : entries_) {
    hasKeyLength_[entry.first.size()] = true;
  }
}

LookupResult IndexedSource::lookupFolded(std::string_view key, std::string_view folded,
                                         bool smtputf8) const {
  if (smtputf8 != smtputf8_) {
    return lookup(key);
  }
  if (folded.size() >= hasKeyLength_.size() || !hasKeyLength_[folded.size()]) {
    return LookupResult::notFound();
  }
  const auto it = entries_.find(std::string(folded));
  if (it == entries_.end()) {
    return LookupResult::notFound();
  }
  return LookupResult::found(it->second);
}

LookupResult IndexedSource::lookup(std::string_view key) const {
  const std::optional<std::string> folded = foldTableKey(key, smtputf8_);
  if (!folded) {
    return LookupResult::notFound();
  }
  const auto it = entries_.find(*folded);
  if (it == entries_.end()) {
    return LookupResult::notFound();
  }
  return LookupResult::found(it->second);
}

void forEachPostmapEntry(std::string_view text, const SourceLocation& origin, Diagnostics* diags,
                         bool smtputf8, const std::function<void(PostmapSourceEntry&&)>& visit) {
  for (const LogicalLine& line : readLogicalLines(text, origin, diags)) {
    const std::string_view all = line.text;
    const SourceLocation where = line.locate(origin, 0);
    if (smtputf8 && !isValidUtf8(all)) {
      diags->warning(where,
                     "non-UTF-8 input \"" + std::string(trim(all)) + "\" -- ignoring this line");
      continue;
    }
    // The key ends at the first whitespace outside double quotes.
    bool inQuote = false;
    size_t i = 0;
    for (; i < all.size(); ++i) {
      const char c = all[i];
      if (inQuote && c == '\\' && i + 1 < all.size()) {
        ++i;
        continue;
      }
      if (c == '"') {
        inQuote = !inQuote;
      } else if (!inQuote && isSpace(c)) {
        break;
      }
    }
    if (inQuote) {
      diags->warning(where,
                     "unbalanced '\"' in '" + std::string(trim(all)) + "' -- ignoring this line");
      continue;
    }
    const std::string_view key = trim(all.substr(0, i));
    const std::string_view value = trim(all.substr(i));
    if (key.empty() || value.empty()) {
      diags->warning(where, "expected format: key whitespace value -- ignoring this line");
      continue;
    }
    if (key.back() == ':') {
      diags->warning(where, "record is in \"key: value\" format; is this an alias file?");
    }
    visit(PostmapSourceEntry{*foldTableKey(key, smtputf8), std::string(value), where.line,
                             where.column});
  }
}

std::unordered_map<std::string, std::string> parsePostmapSource(std::string_view text,
                                                                const SourceLocation& origin,
                                                                Diagnostics* diags, bool smtputf8) {
  std::unordered_map<std::string, std::string> entries;
  forEachPostmapEntry(text, origin, diags, smtputf8, [&](PostmapSourceEntry&& entry) {
    if (entries.count(entry.key) != 0) {
      diags->warning(SourceLocation{origin.file, entry.line, entry.column},
                     "duplicate entry: \"" + entry.key + "\"");
      return;
    }
    entries.emplace(std::move(entry.key), std::move(entry.value));
  });
  return entries;
}

std::unique_ptr<TableSource> loadTableFileSource(std::string_view spec, const SourceLocation& where,
                                                 bool allowSubstitution, Diagnostics* diags,
                                                 bool smtputf8) {
  const size_t colon = spec.find(':');
  if (colon == std::string_view::npos || colon + 1 >= spec.size()) {
    diags->error(where, "table file \"" + std::string(spec) +
                            "\" must be written TYPE:/path (hash, texthash, regexp or pcre)");
    return nullptr;
  }
  const std::string type(spec.substr(0, colon));
  const std::string path(spec.substr(colon + 1));
  if (type != "hash" && type != "texthash" && type != "regexp" && type != "pcre") {
    diags->error(
        where, "unsupported table type \"" + type + "\" (supported: hash, texthash, regexp, pcre)");
    return nullptr;
  }
  StatusOr<std::string> content = readBoundedFile(path, kMaxTableFileBytes);
  if (!content) {
    diags->error(where, content.status().message());
    return nullptr;
  }
  const std::string& text = *content;
  const SourceLocation origin{path, 1, 0};
  if (type == "regexp" || type == "pcre") {
    RegexpTable::Options options{type == "regexp" ? RegexpDialect::kPosix : RegexpDialect::kPcre,
                                 allowSubstitution};
    auto table = RegexpTable::parse(text, origin, options, diags);
    if (table == nullptr) {
      return nullptr;
    }
    return std::make_unique<RegexpSource>(std::string(spec), std::move(table));
  }
  return std::make_unique<IndexedSource>(
      std::string(spec), parsePostmapSource(text, origin, diags, smtputf8), smtputf8);
}

}  // namespace relaykit

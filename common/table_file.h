// SPDX-License-Identifier: Apache-2.0
// table_file.h: indexed (exact-match) table sources and Postfix table source files.
//
// parsePostmapSource() reads postmap(1) SOURCE text as Postfix 3.7's postmap does: logical lines
// (continuations start with whitespace and are appended as they are), "#" comments, the key ends
// at the first whitespace outside double quotes, leading/trailing whitespace is trimmed from the
// value, keys are folded to lower case, and a duplicate key keeps the FIRST value with a warning.
// Lines postmap skips (no value, unbalanced quote) are warnings with postmap's wording, plus
// ' -- ignoring this line'. It never fails.
//
// IndexedSource is an O(1) hash map keyed by folded keys (casefold.h); lookups fold the key too.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/table.h"

namespace relaykit {

class IndexedSource : public TableSource {
 public:
  IndexedSource(std::string description, std::unordered_map<std::string, std::string> entries,
                bool smtputf8 = true);
  bool isPattern() const override { return false; }
  // Found(value) or NotFound; the key is folded to lower case first.
  LookupResult lookup(std::string_view key) const override;
  // O(1) NotFound when no key has folded.size() bytes; else one hash lookup of `folded`.
  LookupResult lookupFolded(std::string_view key, std::string_view folded,
                            bool smtputf8) const override;
  std::string describe() const override { return description_; }
  size_t size() const { return entries_.size(); }

 private:
  std::string description_;
  std::unordered_map<std::string, std::string> entries_;  // folded key -> value
  bool smtputf8_;                                         // foldTableKey's mode
  std::vector<bool> hasKeyLength_;                        // [n]: some folded key is n bytes long
};

// A pattern source: a compiled regexp_table(5)/pcre_table(5), asked only with full keys.
class RegexpSource : public TableSource {
 public:
  RegexpSource(std::string description, std::unique_ptr<RegexpTable> table)
      : description_(std::move(description)), table_(std::move(table)) {}
  bool isPattern() const override { return true; }
  LookupResult lookup(std::string_view key) const override { return table_->lookup(key); }
  std::string describe() const override { return description_; }
  const RegexpTable& table() const { return *table_; }

 private:
  std::string description_;
  std::unique_ptr<RegexpTable> table_;
};

// One entry of postmap source text, in file order: the key folded, the value trimmed, and the
// 1-based line and column where its logical line starts.
struct PostmapSourceEntry {
  std::string key;
  std::string value;
  int line = 0;
  int column = 0;
};

// postmap source text -> `visit` called with every entry in file order, duplicate keys included
// (the caller decides what a duplicate means); lines postmap skips are reported as
// parsePostmapSource reports them, in file order with the entries.
void forEachPostmapEntry(std::string_view text, const SourceLocation& origin, Diagnostics* diags,
                         bool smtputf8, const std::function<void(PostmapSourceEntry&&)>& visit);

// postmap source text -> folded key/value map (see above). `origin` names the file for
// diagnostics (line 1 is the first line of `text`).
// With smtputf8, keys are folded by foldTableKey and a line that is not UTF-8 is ignored with
// postmap's warning.
std::unordered_map<std::string, std::string> parsePostmapSource(std::string_view text,
                                                                const SourceLocation& origin,
                                                                Diagnostics* diags,
                                                                bool smtputf8 = true);

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// regexp_table_impl.h: the compiled form of a regexp_table(5)/pcre_table(5) table, shared by
// its two halves inside common/: regexp_table_parser.cc turns the table text into rules and RE2
// patterns (Postfix's dict_regexp.c syntax), regexp_table.cc matches keys against them (one
// RE2::Set for the whole table, IF/ENDIF guards, $n expansion). Not part of the public API.
#pragma once

#include <re2/re2.h>
#include <re2/set.h>

#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/diagnostics.h"
#include "common/regexp_table.h"
#include "common/regexp_translate.h"

namespace relaykit {

struct RegexpTable::Impl {
  // One piece of a result: literal text, or the text of capture group `group` (> 0).
  struct Segment {
    std::string literal;
    int group = 0;
  };

  struct Rule {
    enum class Op { kMatch, kIf };
    Op op = Op::kMatch;
    SourceLocation where;
    SourceLocation resultWhere;
    std::string resultText;
    int parent = -1;   // innermost enclosing IF (index into rules)
    int primary = -1;  // pattern id: the match pattern, or the IF condition
    bool primaryPositive = true;
    int secondary = -1;  // "/p1/!/p2/": the second pattern
    bool secondaryPositive = true;
    std::vector<Segment> result;
    int maxGroup = 0;
  };

  Options options;
  std::vector<Rule> rules;
  std::vector<std::unique_ptr<re2::RE2>> patterns;
  std::vector<int> patternRule;                // pattern id -> rule index
  std::vector<bool> patternIsPositivePrimary;  // pattern id -> candidate when it matches
  std::vector<int> negatedRules;               // match rules whose primary pattern is negated
  std::vector<int> matchRules;                 // all match rules, in order
  std::unique_ptr<re2::RE2::Set> set;          // all patterns; null when unusable

  // The prefilter: when every pattern is anchored on a literal (anchoredLiteralPrefix), a key
  // that starts with none of them matches no pattern, and its answer is noMatchWinner (a negated
  // rule, or -1) without running RE2. patternPrefix[pid] is "" for a pattern without one.
  std::vector<LiteralPrefix> patternPrefix;
  bool prefiltered = false;
  std::vector<LiteralPrefix> prefixes;  // the distinct prefixes, when prefiltered
  std::bitset<256> prefixFirstBytes;    // their first bytes (both cases when folded)
  int noMatchWinner = -1;
  // Builds the prefilter from patternPrefix (after parsing).
  void buildPrefilter();
  // False when `key` cannot match any pattern (only meaningful when prefiltered).
  bool mayMatch(std::string_view key) const;

  // The first rule (in table order) whose patterns and enclosing IFs hold for `key`; -1 when
  // none. winner() asks the Set which patterns match; winnerLinear() tries rule by rule.
  int winner(std::string_view key) const;
  int winnerLinear(std::string_view key) const;
  // Rule r's result for `key`, $n expanded; nullopt when r < 0.
  std::optional<Match> expand(int r, std::string_view key) const;

 private:
  template <typename Matched>
  int findWinner(const std::vector<int>& candidates, Matched&& matched) const;
};

// RE2 options every pattern of a table and its Set share: no logging, and for the POSIX dialect
// Latin-1 encoding (Postfix runs regcomp(3) in the C locale: every byte is one character, `.`
// matches Latin-1 and broken UTF-8 bytes alike; case folding stays ASCII-only through
// regexp_translate.cc).
inline re2::RE2::Options tableRe2Options(RegexpDialect dialect, int64_t maxMem) {
  re2::RE2::Options o;
  o.set_log_errors(false);
  o.set_max_mem(maxMem);
  if (dialect == RegexpDialect::kPosix) {
    o.set_encoding(re2::RE2::Options::EncodingLatin1);
  }
  return o;
}

// Adds the rules and patterns of `text` to *impl (not the Set), reporting every problem into
// *diags. The caller refuses the table when diags has errors.
void parseRegexpRules(std::string_view text, const SourceLocation& origin,
                      const RegexpTable::Options& options, Diagnostics* diags,
                      RegexpTable::Impl* impl);

}  // namespace relaykit

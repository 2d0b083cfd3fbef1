// SPDX-License-Identifier: Apache-2.0
// regexp_table.h: regexp_table(5) / pcre_table(5) text compiled for RE2, first match wins.
//
// Parses Postfix's rule syntax: "/pattern/flags result", "!/pattern/ result",
// "/p1/flags!/p2/flags result", "if /pattern/flags" ... "endif" (nesting), "#" comments,
// continuation lines, any non-alphanumeric delimiter. Patterns match anywhere in the key (search,
// not anchored); flags toggle the defaults as Postfix does. Results may use $1, ${1}, $(1) and $$.
// Knows nothing about what results mean (a socketmap value, a header_checks action).
//
// Guarantees: a table that parsed is immutable and thread-safe; lookup cost stays nearly flat as
// rules grow (all patterns run at once in an RE2::Set; only the winning rule runs again with
// captures). Fails at parse time: every problem is reported into Diagnostics as FILE:LINE:COL
// (errors refuse the table, Postfix's tolerable oddities are warnings with Postfix's wording).
// At lookup time it cannot fail; if the RE2::Set runs out of memory it falls back to evaluating
// the rules one by one, with the same answer.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/diagnostics.h"
#include "common/lookup_result.h"
#include "common/regexp_translate.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace relaykit {

// regexp_table(5) (POSIX ERE, translated for RE2) or pcre_table(5) (Perl syntax, RE2 subset).
enum class RegexpDialect { kPosix, kPcre };

class RegexpTable {
 public:
  struct Options {
    RegexpDialect dialect;
    // false refuses $n in results (Postfix's DICT_FLAG_NO_REGSUB: transport, relayhost tables).
    bool allowSubstitution = true;
  };

  // The answer of one lookup: the expanded result and where its rule is.
  struct Match {
    std::string value;
    SourceLocation where;        // the rule's first byte
    SourceLocation resultWhere;  // the first byte of its result text (`where` when it has none)
  };

  // One match rule as written, for load-time checks of result texts (e.g. header_checks
  // actions) with exact positions.
  struct RuleInfo {
    SourceLocation where;
    SourceLocation resultWhere;
    std::string resultText;  // as written: $n not expanded, $$ not collapsed
  };

  // Parses `text`; `origin` locates its first line (and, if origin.column > 0, the column of its
  // first byte). Returns nullptr when any error was reported into `diags`.
  static std::unique_ptr<RegexpTable> parse(std::string_view text, const SourceLocation& origin,
                                            const Options& options, Diagnostics* diags);

  ~RegexpTable();
  RegexpTable(const RegexpTable&) = delete;
  RegexpTable& operator=(const RegexpTable&) = delete;

  // The first rule (in file order, if/endif guards honoured) that matches `key`, or nullopt.
  // The value may be empty (a rule without result text, as Postfix allows with a warning).
  std::optional<Match> match(std::string_view key) const;

  // Found(value) for a match (even an empty value), NotFound otherwise. Never an error.
  LookupResult lookup(std::string_view key) const;

  // Literals one of which every key that gets an answer starts with, when the table proves them
  // (every pattern anchored on a literal, and no negated rule answers a key that no pattern
  // matches); nullopt when any key may get an answer.
  std::optional<std::vector<LiteralPrefix>> answerPrefixes() const;

  // Number of match rules (if/endif not counted).
  size_t ruleCount() const;

  // The match rules in file order.
  std::vector<RuleInfo> rules() const;

  // For tests and benchmarks: evaluate rule by rule, as Postfix does, without the RE2::Set.
  std::optional<Match> matchLinear(std::string_view key) const;

  struct Impl;  // opaque: compiled rules and patterns

 private:
  explicit RegexpTable(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace relaykit

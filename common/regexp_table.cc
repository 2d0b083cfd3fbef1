// SPDX-License-Identifier: Apache-2.0
// regexp_table.cc: matching keys against a compiled regexp_table(5)/pcre_table(5) table with one
// RE2::Set, IF/ENDIF guards and $n expansion; the text is parsed by regexp_table_parser.cc.
// Behaviour follows Postfix's dict_regexp.c/dict_pcre.c (re-implemented, see regexp_table.h).
#include "common/regexp_table.h"

#include <algorithm>

#include "common/ascii.h"
#include "common/regexp_table_impl.h"

namespace relaykit {
namespace {

// RE2's memory budget for the Set, which holds every pattern of the table at once; when its DFA
// still runs out, lookups fall back to rule-by-rule evaluation (same answers, slower).
constexpr int64_t kSetMaxMem = int64_t{512} << 20;

}  // namespace

template <typename Matched>
int RegexpTable::Impl::findWinner(const std::vector<int>& candidates, Matched&& matched) const {
  for (const int r : candidates) {
    const Rule& rule = rules[r];
    if (matched(rule.primary) != rule.primaryPositive) {
      continue;
    }
    if (rule.secondary >= 0 && matched(rule.secondary) != rule.secondaryPositive) {
      continue;
    }
    bool guarded = true;
    for (int g = rule.parent; g >= 0; g = rules[g].parent) {
      if (matched(rules[g].primary) != rules[g].primaryPositive) {
        guarded = false;
        break;
      }
    }
    if (guarded) {
      return r;
    }
  }
  return -1;
}

int RegexpTable::Impl::winnerLinear(std::string_view key) const {
  std::vector<signed char> memo(patterns.size(), -1);
  return findWinner(matchRules, [&](int pid) {
    if (memo[pid] < 0) {
      memo[pid] =
          re2::RE2::PartialMatch(re2::StringPiece(key.data(), key.size()), *patterns[pid]) ? 1 : 0;
    }
    return memo[pid] == 1;
  });
}

void RegexpTable::Impl::buildPrefilter() {
  prefiltered =
      !patternPrefix.empty() && std::all_of(patternPrefix.begin(), patternPrefix.end(),
                                            [](const LiteralPrefix& p) { return !p.text.empty(); });
  if (!prefiltered) {
    return;
  }
  for (const LiteralPrefix& p : patternPrefix) {
    const bool known = std::any_of(prefixes.begin(), prefixes.end(), [&](const LiteralPrefix& q) {
      return q.text == p.text && q.foldCase == p.foldCase;
    });
    if (!known) {
      prefixes.push_back(p);
    }
    const auto first = static_cast<unsigned char>(p.text[0]);
    prefixFirstBytes.set(first);
    if (p.foldCase) {
      const char lower = toLowerAscii(p.text[0]);
      prefixFirstBytes.set(static_cast<unsigned char>(lower));
      if (lower >= 'a' && lower <= 'z') {
        prefixFirstBytes.set(static_cast<unsigned char>(lower - 'a' + 'A'));
      }
    }
  }
  // A key that matches no pattern: only negated rules (under negated IFs) can win.
  noMatchWinner = findWinner(negatedRules, [](int) { return false; });
}

bool RegexpTable::Impl::mayMatch(std::string_view key) const {
  if (key.empty() || !prefixFirstBytes.test(static_cast<unsigned char>(key[0]))) {
    return false;
  }
  return std::any_of(prefixes.begin(), prefixes.end(),
                     [&](const LiteralPrefix& p) { return p.begins(key); });
}

int RegexpTable::Impl::winner(std::string_view key) const {
  if (prefiltered && !mayMatch(key)) {
    return noMatchWinner;
  }
  if (set == nullptr) {
    return winnerLinear(key);
  }
  // Per-thread scratch space: lookups allocate nothing once warm.
  thread_local std::vector<int> hits;
  thread_local std::vector<int> candidates;
  hits.clear();
  candidates.clear();
  re2::RE2::Set::ErrorInfo info;
  info.kind = re2::RE2::Set::kNoError;
  if (!set->Match(re2::StringPiece(key.data(), key.size()), &hits, &info) &&
      info.kind != re2::RE2::Set::kNoError) {
    return winnerLinear(key);
  }
  std::sort(hits.begin(), hits.end());
  for (const int pid : hits) {
    if (patternIsPositivePrimary[pid]) {
      candidates.push_back(patternRule[pid]);
    }
  }
  if (!negatedRules.empty()) {
    const size_t mid = candidates.size();
    candidates.insert(candidates.end(), negatedRules.begin(), negatedRules.end());
    std::inplace_merge(candidates.begin(), candidates.begin() + mid, candidates.end());
  }
  return findWinner(candidates,
                    [&](int pid) { return std::binary_search(hits.begin(), hits.end(), pid); });
}

std::optional<RegexpTable::Match> RegexpTable::Impl::expand(int r, std::string_view key) const {
  if (r < 0) {
    return std::nullopt;
  }
  const Rule& rule = rules[r];
  Match m;
  m.where = rule.where;
  m.resultWhere = rule.resultWhere;
  if (rule.maxGroup == 0) {
    for (const Segment& s : rule.result) {
      m.value += s.literal;
    }
    return m;
  }
  thread_local std::vector<re2::StringPiece> groups;
  groups.assign(rule.maxGroup + 1, re2::StringPiece());
  const re2::RE2& re = *patterns[rule.primary];
  if (!re.Match(re2::StringPiece(key.data(), key.size()), 0, key.size(), re2::RE2::UNANCHORED,
                groups.data(), static_cast<int>(groups.size()))) {
    return m;  // cannot happen: the Set said it matched
  }
  for (const Segment& s : rule.result) {
    if (s.group == 0) {
      m.value += s.literal;
    } else if (groups[s.group].data() != nullptr) {
      m.value.append(groups[s.group].data(), groups[s.group].size());
    }
  }
  return m;
}

RegexpTable::RegexpTable(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegexpTable::~RegexpTable() = default;

std::unique_ptr<RegexpTable> RegexpTable::parse(std::string_view text, const SourceLocation& origin,
                                                const Options& options, Diagnostics* diags) {
  Diagnostics local;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  parseRegexpRules(text, origin, options, &local, impl.get());
  const bool failed = local.hasErrors();
  if (diags != nullptr) {
    diags->append(local);
  }
  if (failed) {
    return nullptr;
  }
  impl->buildPrefilter();
  if (!impl->patterns.empty()) {
    re2::RE2::Options so = tableRe2Options(options.dialect, kSetMaxMem);
    auto set = std::make_unique<re2::RE2::Set>(so, re2::RE2::UNANCHORED);
    bool ok = true;
    for (const auto& re : impl->patterns) {
      std::string err;
      if (set->Add(re->pattern(), &err) < 0) {
        ok = false;
        break;
      }
    }
    if (ok && set->Compile()) {
      impl->set = std::move(set);
    }
  }
  return std::unique_ptr<RegexpTable>(new RegexpTable(std::move(impl)));
}

std::optional<RegexpTable::Match> RegexpTable::match(std::string_view key) const {
  return impl_->expand(impl_->winner(key), key);
}

std::optional<RegexpTable::Match> RegexpTable::matchLinear(std::string_view key) const {
  return impl_->expand(impl_->winnerLinear(key), key);
}

LookupResult RegexpTable::lookup(std::string_view key) const {
  std::optional<Match> m = match(key);
  if (!m) {
    return LookupResult::notFound();
  }
  return LookupResult::found(std::move(m->value));
}

std::optional<std::vector<LiteralPrefix>> RegexpTable::answerPrefixes() const {
  if (!impl_->prefiltered || impl_->noMatchWinner >= 0) {
    return std::nullopt;
  }
  return impl_->prefixes;
}

size_t RegexpTable::ruleCount() const {
  return impl_->matchRules.size();
}

std::vector<RegexpTable::RuleInfo> RegexpTable::rules() const {
  std::vector<RuleInfo> out;
  out.reserve(impl_->matchRules.size());
  for (const int r : impl_->matchRules) {
    const Impl::Rule& rule = impl_->rules[r];
    out.push_back(RuleInfo{rule.where, rule.resultWhere, rule.resultText});
  }
  return out;
}

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// regexp_table_parser.cc: parsing regexp_table(5)/pcre_table(5) text into the rules and RE2
// patterns of a RegexpTable (regexp_table_impl.h), as Postfix's dict_regexp.c/dict_pcre.c read
// them: /pattern/flags result, !/negation/, /p1/!/p2/, IF/ENDIF, $n, every problem reported with
// its file, line and column.
#include <algorithm>

#include "common/ascii.h"
#include "common/logical_lines.h"
#include "common/regexp_table_impl.h"
#include "common/regexp_translate.h"

namespace relaykit {
namespace {

// RE2's memory budget for one pattern.
constexpr int64_t kPatternMaxMem = int64_t{8} << 20;

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}
bool isAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool startsWithWord(std::string_view text, std::string_view word) {
  if (!startsWithIgnoreCase(text, word)) {
    return false;
  }
  return text.size() == word.size() || !isAlnum(text[word.size()]);
}

// A pattern as written in the table, before compilation.
struct PatternSpec {
  bool positive = true;
  std::string body;
  std::string flags;
  size_t delimOffset = 0;  // offset of the opening delimiter in the logical line
};

// Context shared by the parse steps of one table.
class Parser {
 public:
  Parser(const SourceLocation& origin, const RegexpTable::Options& options, Diagnostics* diags,
         RegexpTable::Impl* impl)
      : origin_(origin), options_(options), diags_(diags), impl_(impl) {}

  void parseLine(const LogicalLine& line) {
    line_ = &line;
    std::string_view text = line.text;
    while (!text.empty() && isSpace(text.back())) {
      text.remove_suffix(1);
    }
    if (!isAlnum(text.front())) {
      parseMatch(text);
    } else if (startsWithWord(text, "if")) {
      parseIf(text);
    } else if (startsWithWord(text, "endif")) {
      parseEndif(text);
    } else {
      error(0, "unrecognized request (expected /pattern/ result, if /pattern/ or endif)");
    }
  }

  void finish() {
    for (auto it = ifStack_.rbegin(); it != ifStack_.rend(); ++it) {
      diags_->warning(impl_->rules[*it].where, "IF has no matching ENDIF");
    }
  }

 private:
  void error(size_t offset, std::string message) {
    diags_->error(line_->locate(origin_, offset), std::move(message));
  }
  void warning(size_t offset, std::string message) {
    diags_->warning(line_->locate(origin_, offset), std::move(message));
  }

  // dict_regexp_get_pat: negations, delimiter, body, flags. Returns false after an error.
  bool getPattern(std::string_view text, size_t* pos, PatternSpec* spec) {
    size_t p = *pos;
    spec->positive = true;
    for (; p < text.size(); ++p) {
      if (text[p] == '!') {
        spec->positive = !spec->positive;
      } else if (!isSpace(text[p])) {
        break;
      }
    }
    if (p >= text.size()) {
      error(p, "no regexp");
      return false;
    }
    spec->delimOffset = p;
    const char delim = text[p++];
    const size_t start = p;
    while (p < text.size()) {
      if (text[p] == '\\') {
        if (p + 1 < text.size()) {
          ++p;
        } else {
          p = text.size();
          break;
        }
      } else if (text[p] == delim) {
        break;
      }
      ++p;
    }
    if (p >= text.size()) {
      error(spec->delimOffset, std::string("no closing regexp delimiter \"") + delim + "\"");
      return false;
    }
    spec->body = std::string(text.substr(start, p - start));
    ++p;
    const size_t flagsStart = p;
    const std::string_view allowed = options_.dialect == RegexpDialect::kPosix ? "imx" : "imsxAEUX";
    while (p < text.size() && !isSpace(text[p]) && text[p] != '!') {
      if (allowed.find(text[p]) == std::string_view::npos) {
        error(p, std::string("unknown regexp option \"") + text[p] + "\"");
        return false;
      }
      ++p;
    }
    spec->flags = std::string(text.substr(flagsStart, p - flagsStart));
    *pos = p;
    return true;
  }

  // Compiles one pattern; returns its id, or -1 after an error.
  int compilePattern(const PatternSpec& spec, int ruleIndex, bool positivePrimary) {
    std::string prefix;
    std::string body;
    auto toggled = [&](char flag) {
      return std::count(spec.flags.begin(), spec.flags.end(), flag) % 2 == 1;
    };
    if (options_.dialect == RegexpDialect::kPosix) {
      if (toggled('x')) {
        error(spec.delimOffset,
              "flag \"x\" selects POSIX basic regular expressions, which are not supported: "
              "write the pattern as an extended regular expression");
        return -1;
      }
      const bool icase = !toggled('i');
      const bool newline = toggled('m');
      RegexpTranslation t = translatePosixToRe2(spec.body, newline, icase);
      if (!t.ok) {
        error(spec.delimOffset + 1 + t.errorOffset, "invalid regular expression: " + t.error);
        return -1;
      }
      prefix = std::string("(?") + (icase ? "i" : "") + (newline ? "m" : "s") + ")";
      body = std::move(t.re2);
    } else {
      if (toggled('x')) {
        error(spec.delimOffset, "flag \"x\" (PCRE extended syntax) is not supported by RE2");
        return -1;
      }
      RegexpTranslation t = checkPcreForRe2(spec.body);
      if (!t.ok) {
        error(spec.delimOffset + 1 + t.errorOffset, "invalid regular expression: " + t.error);
        return -1;
      }
      std::string f;
      if (!toggled('i')) {
        f += 'i';
      }
      if (toggled('m')) {
        f += 'm';
      }
      if (toggled('s')) {
        f += 's';
      }
      if (toggled('U')) {
        f += 'U';
      }
      prefix = f.empty() ? std::string() : "(?" + f + ")";
      body = toggled('A') ? "\\A(?:" + t.re2 + ")" : std::move(t.re2);
    }
    re2::RE2::Options ro = tableRe2Options(options_.dialect, kPatternMaxMem);
    ro.set_longest_match(options_.dialect == RegexpDialect::kPosix);
    auto re = std::make_unique<re2::RE2>(prefix + body, ro);
    if (!re->ok()) {
      // Report RE2's message about the pattern as written, without our flag prefix.
      re2::RE2 bare(body, ro);
      error(spec.delimOffset, "invalid regular expression /" + spec.body +
                                  "/: " + (bare.ok() ? re->error() : bare.error()));
      return -1;
    }
    impl_->patterns.push_back(std::move(re));
    impl_->patternPrefix.push_back(literalPrefix(spec, toggled));
    impl_->patternRule.push_back(ruleIndex);
    impl_->patternIsPositivePrimary.push_back(positivePrimary);
    return static_cast<int>(impl_->patterns.size()) - 1;
  }

  // The literal every match of the pattern starts the key with, for the prefilter: only where `^`
  // means the start of the key (no `m` flag). POSIX folds case ASCII-only (Latin-1 mode), PCRE
  // patterns run in RE2's UTF-8 mode.
  template <typename Toggled>
  LiteralPrefix literalPrefix(const PatternSpec& spec, Toggled&& toggled) const {
    if (toggled('m')) {
      return LiteralPrefix();
    }
    PatternCase c = PatternCase::kSensitive;
    if (!toggled('i')) {
      c = options_.dialect == RegexpDialect::kPosix ? PatternCase::kAsciiFold
                                                    : PatternCase::kUnicodeFold;
    }
    return anchoredLiteralPrefix(spec.body, c);
  }

  // mac_parse(3) over the result text: $$, $name, ${name}, $(name); names must be numbers >= 1.
  bool parseResult(std::string_view text, size_t base, std::vector<RegexpTable::Impl::Segment>* out,
                   int* maxGroup) {
    std::string literal;
    *maxGroup = 0;
    size_t i = 0;
    auto flush = [&]() {
      if (!literal.empty()) {
        out->push_back(RegexpTable::Impl::Segment{std::move(literal), 0});
        literal.clear();
      }
    };
    while (i < text.size()) {
      if (text[i] != '$') {
        literal.push_back(text[i++]);
        continue;
      }
      if (i + 1 < text.size() && text[i + 1] == '$') {
        literal.push_back('$');
        i += 2;
        continue;
      }
      std::string name;
      const size_t dollar = i;
      if (i + 1 < text.size() && (text[i + 1] == '{' || text[i + 1] == '(')) {
        const char open = text[i + 1];
        const char close = open == '{' ? '}' : ')';
        int depth = 1;
        size_t j = i + 2;
        for (; j < text.size(); ++j) {
          if (text[j] == open) {
            ++depth;
          } else if (text[j] == close && --depth == 0) {
            break;
          }
        }
        if (j >= text.size()) {
          error(base + dollar, std::string("bad replacement syntax: unbalanced \"") + open + "\"");
          return false;
        }
        name = std::string(text.substr(i + 2, j - (i + 2)));
        i = j + 1;
      } else {
        size_t j = i + 1;
        while (j < text.size() && (isAlnum(text[j]) || text[j] == '_')) {
          ++j;
        }
        if (j == i + 1) {
          error(base + dollar,
                "bad replacement syntax: empty macro name: \"" + std::string(text) + "\"");
          return false;
        }
        name = std::string(text.substr(i + 1, j - (i + 1)));
        i = j;
      }
      if (name.empty() ||
          !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        error(base + dollar,
              "bad replacement syntax: non-numeric replacement index \"" + name + "\"");
        return false;
      }
      // At most 6 digits are read (a larger index is out of range anyway): no overflow.
      long n = name.size() > 6 ? 1000000 : 0;
      if (name.size() <= 6) {
        for (char c : name) {
          n = n * 10 + (c - '0');
        }
      }
      if (n < 1) {
        error(base + dollar,
              "bad replacement syntax: out-of-range replacement index \"" + name + "\"");
        return false;
      }
      flush();
      out->push_back(RegexpTable::Impl::Segment{std::string(), static_cast<int>(n)});
      *maxGroup = std::max(*maxGroup, static_cast<int>(n));
    }
    flush();
    return true;
  }

  void parseMatch(std::string_view text) {
    size_t p = 0;
    PatternSpec first;
    PatternSpec second;
    bool haveSecond = false;
    if (!getPattern(text, &p, &first)) {
      return;
    }
    if (p < text.size() && text[p] == '!') {
      if (!getPattern(text, &p, &second)) {
        return;
      }
      haveSecond = true;
    }
    while (p < text.size() && isSpace(text[p])) {
      ++p;
    }
    RegexpTable::Impl::Rule rule;
    rule.op = RegexpTable::Impl::Rule::Op::kMatch;
    rule.where = line_->locate(origin_, 0);
    rule.parent = ifStack_.empty() ? -1 : ifStack_.back();
    rule.resultWhere = line_->locate(origin_, p < text.size() ? p : 0);
    rule.resultText = std::string(text.substr(std::min(p, text.size())));
    if (p >= text.size()) {
      warning(0, "no replacement text: using empty string");
    } else if (!parseResult(text.substr(p), p, &rule.result, &rule.maxGroup)) {
      return;
    }
    if (rule.maxGroup > 0 && !first.positive) {
      error(p, "$number found in negative match replacement text");
      return;
    }
    if (rule.maxGroup > 0 && !options_.allowSubstitution) {
      error(p, "regular expression substitution is not allowed in this table");
      return;
    }
    const int index = static_cast<int>(impl_->rules.size());
    rule.primary = compilePattern(first, index, first.positive);
    if (rule.primary < 0) {
      return;
    }
    rule.primaryPositive = first.positive;
    const int groups = impl_->patterns[rule.primary]->NumberOfCapturingGroups();
    if (rule.maxGroup > groups) {
      error(p, "out of range replacement index \"" + std::to_string(rule.maxGroup) +
                   "\": the pattern has " + std::to_string(groups) + " group" +
                   (groups == 1 ? "" : "s"));
      return;
    }
    if (haveSecond) {
      rule.secondary = compilePattern(second, index, false);
      if (rule.secondary < 0) {
        return;
      }
      rule.secondaryPositive = second.positive;
    }
    if (!rule.primaryPositive) {
      impl_->negatedRules.push_back(index);
    }
    impl_->matchRules.push_back(index);
    impl_->rules.push_back(std::move(rule));
  }

  void parseIf(std::string_view text) {
    size_t p = 2;
    while (p < text.size() && isSpace(text[p])) {
      ++p;
    }
    PatternSpec spec;
    if (!getPattern(text, &p, &spec)) {
      return;
    }
    while (p < text.size() && isSpace(text[p])) {
      ++p;
    }
    if (p < text.size()) {
      warning(p, "ignoring extra text after IF statement: \"" + std::string(text.substr(p)) + "\"");
      warning(p, "do not prepend whitespace to statements between IF and ENDIF");
    }
    RegexpTable::Impl::Rule rule;
    rule.op = RegexpTable::Impl::Rule::Op::kIf;
    rule.where = line_->locate(origin_, 0);
    rule.parent = ifStack_.empty() ? -1 : ifStack_.back();
    const int index = static_cast<int>(impl_->rules.size());
    rule.primary = compilePattern(spec, index, false);
    if (rule.primary < 0) {
      // Keep the nesting right so later ENDIFs pair up; the table is refused anyway.
      rule.primary = -1;
    }
    rule.primaryPositive = spec.positive;
    impl_->rules.push_back(std::move(rule));
    ifStack_.push_back(index);
  }

  void parseEndif(std::string_view text) {
    if (ifStack_.empty()) {
      warning(0, "ignoring ENDIF without matching IF");
      return;
    }
    size_t p = 5;
    while (p < text.size() && isSpace(text[p])) {
      ++p;
    }
    if (p < text.size()) {
      warning(p, "ignoring extra text after ENDIF");
    }
    ifStack_.pop_back();
  }

  const SourceLocation& origin_;
  const RegexpTable::Options& options_;
  Diagnostics* diags_;
  RegexpTable::Impl* impl_;
  const LogicalLine* line_ = nullptr;
  std::vector<int> ifStack_;
};

}  // namespace

void parseRegexpRules(std::string_view text, const SourceLocation& origin,
                      const RegexpTable::Options& options, Diagnostics* diags,
                      RegexpTable::Impl* impl) {
  Parser parser(origin, options, diags, impl);
  for (const LogicalLine& line : readLogicalLines(text, origin, diags)) {
    parser.parseLine(line);
  }
  parser.finish();
}

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// regexp_translate.cc: POSIX ERE -> RE2 rewriting (see regexp_translate.h for the rules).
#include "common/regexp_translate.h"

#include <cctype>

#include "common/ascii.h"

namespace relaykit {
namespace {

RegexpTranslation fail(std::string message, size_t offset) {
  RegexpTranslation t;
  t.ok = false;
  t.error = std::move(message);
  t.errorOffset = offset;
  return t;
}

bool isAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Appends one literal byte to an RE2 pattern (outside or inside a class).
void appendLiteral(std::string* out, char c) {
  if (!isAsciiAlnum(c) && static_cast<unsigned char>(c) < 0x80 && c != ' ' && c != '\n' &&
      std::ispunct(static_cast<unsigned char>(c))) {
    out->push_back('\\');
  }
  out->push_back(c);
}

// Appends one 8-bit byte outside a bracket expression as an atom of its own that is never
// case-folded: RE2 runs these patterns as Latin-1, and in the C locale REG_ICASE folds ASCII
// letters only (/\xe9/i must not match \xc9).
void appendEightBit(std::string* out, char c) {
  static const char kHex[] = "0123456789ABCDEF";
  const unsigned char u = static_cast<unsigned char>(c);
  out->append("(?-i:\\x");
  out->push_back(kHex[u >> 4]);
  out->push_back(kHex[u & 0xf]);
  out->push_back(')');
}

// Adds to *variants the other ASCII case of every letter in lo..hi (REG_ICASE in the C locale).
void appendCaseVariants(unsigned char lo, unsigned char hi, std::string* variants) {
  for (unsigned c = lo; c <= hi; ++c) {
    if (c >= 'a' && c <= 'z') {
      variants->push_back(static_cast<char>(c - 'a' + 'A'));
    } else if (c >= 'A' && c <= 'Z') {
      variants->push_back(static_cast<char>(c - 'A' + 'a'));
    }
  }
}

// Appends one byte as a bracket-expression member in RE2 syntax.
void appendBracketMember(std::string* out, char c) {
  if (c == '\\' || c == '[' || c == ']' || c == '^' || c == '-') {
    out->push_back('\\');  // literal in POSIX (where it can stand), an operator in RE2
  }
  out->push_back(c);
}

// Translates the bracket expression starting at posix[*pos] == '['; advances *pos past ']'.
// Under REG_ICASE (icase) RE2 in Latin-1 mode would also fold the Latin-1 letters of a class;
// glibc in the C locale folds ASCII letters only. So a class holding an 8-bit byte is emitted
// case-sensitively, with the other case of each of its ASCII letters added explicitly.
bool translateBracket(std::string_view posix, size_t* pos, bool newlineSensitive, bool icase,
                      std::string* out, RegexpTranslation* err) {
  const size_t open = *pos;
  size_t j = open + 1;
  std::string members;   // the class body in RE2 syntax, without "[" "^" "]"
  std::string variants;  // other-case ASCII letters, used only when the class is case-sensitive
  bool eightBit = false;
  bool negated = false;
  if (j < posix.size() && posix[j] == '^') {
    negated = true;
    if (newlineSensitive) {
      members.append("\\n");
    }
    ++j;
  }
  if (j < posix.size() && posix[j] == ']') {
    members.append("\\]");
    ++j;
  }
  for (;;) {
    if (j >= posix.size()) {
      *err = fail("unmatched [ or [^ in bracket expression", open);
      return false;
    }
    const char c = posix[j];
    if (c == ']') {
      ++j;
      break;
    }
    if (static_cast<unsigned char>(c) >= 0x80) {
      eightBit = true;
    }
    if (c == '[' && j + 1 < posix.size() &&
        (posix[j + 1] == ':' || posix[j + 1] == '=' || posix[j + 1] == '.')) {
      const char kind = posix[j + 1];
      const char close[3] = {kind, ']', '\0'};
      const size_t end = posix.find(close, j + 2);
      if (end == std::string_view::npos) {
        *err = fail(std::string("unterminated [") + kind + " in bracket expression", j);
        return false;
      }
      const std::string_view inner = posix.substr(j + 2, end - (j + 2));
      if (kind == ':') {
        members.append("[:");
        members.append(inner);
        members.append(":]");
        if (inner == "upper") {
          variants.append("[:lower:]");
        } else if (inner == "lower") {
          variants.append("[:upper:]");
        }
      } else if (inner.size() == 1) {
        appendLiteral(&members, inner[0]);
        appendCaseVariants(static_cast<unsigned char>(inner[0]),
                           static_cast<unsigned char>(inner[0]), &variants);
        eightBit = eightBit || static_cast<unsigned char>(inner[0]) >= 0x80;
      } else {
        *err = fail(std::string("collating element [") + kind + std::string(inner) + kind +
                        "] is not supported by RE2",
                    j);
        return false;
      }
      j = end + 2;
      continue;
    }
    if (c != '[' && j + 2 < posix.size() && posix[j + 1] == '-' && posix[j + 2] != ']' &&
        posix[j + 2] != '[') {
      // A range lo-hi of plain bytes.
      const char hi = posix[j + 2];
      eightBit = eightBit || static_cast<unsigned char>(hi) >= 0x80;
      appendBracketMember(&members, c);
      members.push_back('-');
      appendBracketMember(&members, hi);
      appendCaseVariants(static_cast<unsigned char>(c), static_cast<unsigned char>(hi), &variants);
      j += 3;
      continue;
    }
    if (c == '\\' || c == '[') {
      members.push_back('\\');  // literal in POSIX, an escape (or class start) in RE2
      members.push_back(c);
      ++j;
      continue;
    }
    members.push_back(c);
    appendCaseVariants(static_cast<unsigned char>(c), static_cast<unsigned char>(c), &variants);
    ++j;
  }
  const bool explicitCase = icase && eightBit;
  out->append(explicitCase ? "(?-i:[" : "[");
  if (negated) {
    out->push_back('^');
  }
  out->append(members);
  if (explicitCase) {
    out->append(variants);
    out->append("])");
  } else {
    out->push_back(']');
  }
  *pos = j;
  return true;
}

}  // namespace

RegexpTranslation translatePosixToRe2(std::string_view posix, bool newlineSensitive,
                                      bool caseInsensitive) {
  std::string out;
  out.reserve(posix.size() + 8);
  size_t lastQuantifier = std::string::npos;  // where in `out` the last *, + or ? went
  size_t i = 0;
  while (i < posix.size()) {
    const char c = posix[i];
    if (c == '\\') {
      if (i + 1 >= posix.size()) {
        return fail("trailing backslash (\\)", i);
      }
      const char d = posix[i + 1];
      if (d >= '1' && d <= '9') {
        return fail(std::string("back-reference \\") + d + " is not supported by RE2", i);
      }
      switch (d) {
        case '<':
        case '>':
          out.append("\\b");
          break;
        case '`':
          out.append("\\A");
          break;
        case '\'':
          out.append("\\z");
          break;
        case 's':
          out.append("[\\t\\n\\v\\f\\r ]");  // GNU \s is [[:space:]]; RE2's \s lacks \v
          break;
        case 'S':
          out.append("[^\\t\\n\\v\\f\\r ]");
          break;
        case 'b':
        case 'B':
        case 'w':
        case 'W':
          out.push_back('\\');
          out.push_back(d);
          break;
        default:
          if (isAsciiAlnum(d)) {
            return fail(std::string("escape \\") + d +
                            " has no defined meaning in a POSIX regular expression",
                        i);
          }
          if (static_cast<unsigned char>(d) >= 0x80) {
            appendEightBit(&out, d);
          } else {
            appendLiteral(&out, d);
          }
          break;
      }
      i += 2;
      continue;
    }
    if (c == '[') {
      RegexpTranslation err;
      if (!translateBracket(posix, &i, newlineSensitive, caseInsensitive, &out, &err)) {
        return err;
      }
      continue;
    }
    if (c == '(' && i + 1 < posix.size() && posix[i + 1] == '?') {
      return fail("\"(?\" is not valid in a POSIX regular expression", i);
    }
    if (c == '*' || c == '+' || c == '?') {
      if (i > 0 && posix[i - 1] == '^' && (i == 1 || posix[i - 2] != '\\')) {
        // glibc refuses a repeated anchor ("^*"); RE2 would accept it.
        return fail("invalid preceding regular expression", i);
      }
      if (lastQuantifier != std::string::npos && lastQuantifier + 1 == out.size()) {
        // glibc takes stacked operators ("a**", "a+?"): the same as one operator, which RE2
        // needs ("a*?" would even mean a non-greedy a* there).
        char& q = out[lastQuantifier];
        q = q == c && c != '*' ? c : '*';
        ++i;
        continue;
      }
      lastQuantifier = out.size();
      out.push_back(c);
      ++i;
      continue;
    }
    if (c == '{' && i + 1 < posix.size() && posix[i + 1] == ',') {
      out.append("{0");  // glibc reads {,n} as {0,n}
      ++i;
      continue;
    }
    if (static_cast<unsigned char>(c) >= 0x80) {
      appendEightBit(&out, c);
      ++i;
      continue;
    }
    out.push_back(c);
    ++i;
  }
  RegexpTranslation t;
  t.ok = true;
  t.re2 = std::move(out);
  return t;
}

RegexpTranslation checkPcreForRe2(std::string_view pcre) {
  bool inClass = false;
  for (size_t i = 0; i < pcre.size(); ++i) {
    const char c = pcre[i];
    if (c == '\\') {
      if (i + 1 < pcre.size() && !inClass && pcre[i + 1] >= '1' && pcre[i + 1] <= '9') {
        return fail(std::string("back-reference \\") + pcre[i + 1] + " is not supported by RE2", i);
      }
      ++i;
      continue;
    }
    if (c == '[' && !inClass) {
      inClass = true;
      if (i + 1 < pcre.size() && pcre[i + 1] == '^') {
        ++i;
      }
      if (i + 1 < pcre.size() && pcre[i + 1] == ']') {
        ++i;
      }
    } else if (c == ']' && inClass) {
      inClass = false;
    }
  }
  RegexpTranslation t;
  t.ok = true;
  t.re2 = std::string(pcre);
  return t;
}

LiteralPrefix anchoredLiteralPrefix(std::string_view pattern, PatternCase patternCase) {
  LiteralPrefix prefix;
  prefix.foldCase = patternCase != PatternCase::kSensitive;
  if (pattern.empty() || pattern[0] != '^' || pattern.find('|') != std::string_view::npos) {
    return prefix;
  }
  auto plain = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == ':';
  };
  size_t end = 1;
  while (end < pattern.size() && plain(pattern[end])) {
    ++end;
  }
  if (end < pattern.size() && end > 1) {
    const char next = pattern[end];
    if (next == '?' || next == '*' || next == '+' || next == '{') {
      --end;  // the last character may be absent or repeated
    }
  }
  if (patternCase == PatternCase::kUnicodeFold) {
    const size_t folds = pattern.substr(0, end).find_first_of("kKsS");
    if (folds != std::string_view::npos) {
      end = folds;
    }
  }
  prefix.text = std::string(pattern.substr(1, end - 1));
  return prefix;
}

LiteralSuffix anchoredLiteralSuffix(std::string_view pattern, PatternCase patternCase) {
  LiteralSuffix suffix;
  suffix.foldCase = patternCase != PatternCase::kSensitive;
  if (pattern.size() < 2 || pattern.back() != '$' || pattern[pattern.size() - 2] == '\\' ||
      pattern.find('|') != std::string_view::npos || pattern.find("(?") != std::string_view::npos ||
      pattern.find("\\Q") != std::string_view::npos) {
    return suffix;
  }
  auto plain = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-_:@<>=,;/'\"!%&~ ").find(c) != std::string_view::npos;
  };
  const size_t end = pattern.size() - 1;  // the `$`
  size_t begin = end;
  while (begin > 0 && plain(pattern[begin - 1])) {
    --begin;
  }
  if (begin > 0 && pattern[begin - 1] == '\\') {
    return suffix;  // `\d`, `\pN`, `\x41`...: the run starts inside an escape
  }
  if (patternCase == PatternCase::kUnicodeFold) {
    const size_t folds = pattern.substr(begin, end - begin).find_last_of("kKsS");
    if (folds != std::string_view::npos) {
      begin += folds + 1;
    }
  }
  suffix.text = std::string(pattern.substr(begin, end - begin));
  return suffix;
}

}  // namespace relaykit

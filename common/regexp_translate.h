// SPDX-License-Identifier: Apache-2.0
// regexp_translate.h: POSIX extended regular expressions (regexp_table(5), as glibc's regcomp
// reads them) rewritten into RE2 syntax with the same meaning.
//
// What changes: a backslash inside a bracket expression is literal in POSIX ([\] is a class of
// one backslash); GNU's \< and \> become \b; \` and \' become \A and \z; {,n} becomes {0,n};
// [=c=] and [.c.] of one character become that character; under REG_NEWLINE (the `m` flag) a
// non-matching list [^...] also excludes newline; \s and \S become explicit [[:space:]] sets (RE2's
// \s lacks \v); an 8-bit byte outside brackets becomes a case-sensitive \xHH atom (the result is
// for RE2's Latin-1 mode: one byte is one character, as for regcomp in the C locale); under
// REG_ICASE a bracket expression holding an 8-bit byte becomes a case-sensitive class with the
// other case of its ASCII letters added (RE2 would fold Latin-1 letters too). What is refused, with
// a message naming the construct: back-references (\1..\9, RE2 has none), escapes of letters or
// digits whose POSIX meaning is undefined (\d, \n: glibc matches neither the letter nor what Perl
// means), multi-character collating elements, "(?" (an error in POSIX too), a trailing backslash
// and an unterminated bracket expression. Everything else is left for RE2 to compile and judge.
#pragma once

#include <string>
#include <string_view>

#include "common/ascii.h"

namespace relaykit {

struct RegexpTranslation {
  bool ok = false;
  std::string re2;         // the pattern in RE2 syntax when ok
  std::string error;       // what is wrong when !ok
  size_t errorOffset = 0;  // byte offset into the POSIX pattern where the problem starts
};

// Translates one POSIX ERE. `newlineSensitive` is REG_NEWLINE (regexp_table's `m` flag);
// `caseInsensitive` is REG_ICASE (the pattern will run under RE2's (?i)).
RegexpTranslation translatePosixToRe2(std::string_view posix, bool newlineSensitive,
                                      bool caseInsensitive);

// Checks a pcre_table(5) pattern for constructs RE2 lacks and reports them by name
// (back-references); the pattern itself is already RE2 (Perl) syntax and is returned unchanged.
RegexpTranslation checkPcreForRe2(std::string_view pcre);

// How a pattern's letters match: as written, ASCII-case-insensitively (POSIX, RE2 in Latin-1
// mode), or with RE2's Unicode case folding (UTF-8 mode: 'k' also matches U+212A KELVIN SIGN and
// 's' U+017F LONG S; every other letter, digit, '-', '_' and ':' only its ASCII self and case).
enum class PatternCase { kSensitive, kAsciiFold, kUnicodeFold };

// A literal every match starts the subject with; empty text: none known.
struct LiteralPrefix {
  std::string text;
  bool foldCase = false;  // compare ASCII-case-insensitively
  // True when `subject` starts with the text.
  bool begins(std::string_view subject) const {
    return foldCase ? startsWithIgnoreCase(subject, text) : subject.substr(0, text.size()) == text;
  }
};

// The literal every match of `pattern` starts the subject with, when that can be read off the
// pattern as written: `^` followed by letters, digits, '-', '_' and ':' (a last character under
// a quantifier ?, *, + or { is left out; under kUnicodeFold the text stops before 'k' or 's'),
// in a pattern without '|'. Empty text when nothing can be proven. The reading holds for POSIX
// EREs and for RE2/PCRE syntax provided the pattern runs without multi-line mode (`^` only at the
// start of the subject) and without extended syntax: the caller checks those. Linear.
LiteralPrefix anchoredLiteralPrefix(std::string_view pattern, PatternCase patternCase);

// A literal every match ends the subject with; empty text: none known.
struct LiteralSuffix {
  std::string text;
  bool foldCase = false;  // compare ASCII-case-insensitively
  // True when `subject` ends with the text.
  bool ends(std::string_view subject) const {
    if (subject.size() < text.size()) {
      return false;
    }
    const std::string_view tail = subject.substr(subject.size() - text.size());
    return foldCase ? equalsIgnoreCase(tail, text) : tail == text;
  }
};

// The literal every match of `pattern` ends the subject with, when that can be read off the
// pattern as written: letters, digits and the punctuation "-_:@<>=,;/'\"!%&~ " right before a
// closing `$` (under kUnicodeFold the text starts after the last 'k' or 's'), in a pattern
// without '|', without `(?` (flags could change case or `$`) and without `\Q`. A run that an
// escape could reach (a backslash right before it) proves nothing. Empty text when nothing can be
// proven. Same conditions as anchoredLiteralPrefix: the caller checks that `$` can only match at
// the end of the subject (no multi-line mode). Linear.
LiteralSuffix anchoredLiteralSuffix(std::string_view pattern, PatternCase patternCase);

}  // namespace relaykit

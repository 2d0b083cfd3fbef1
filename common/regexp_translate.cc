// regexp_translate.cc: POSIX ERE -> RE2 rewriting (see regexp_translate.h for the rules).
#include "common/regexp_translate.h"

#include <cctype>

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

// Translates the bracket expression starting at posix[*pos] == '['; advances *pos past ']'.
bool translateBracket(std::string_view posix, size_t* pos, bool newlineSensitive, std::string* out,
                      RegexpTranslation* err) {
  const size_t open = *pos;
  size_t j = open + 1;
  out->push_back('[');
  if (j < posix.size() && posix[j] == '^') {
    out->push_back('^');
    if (newlineSensitive) {
      out->append("\\n");
    }
    ++j;
  }
  if (j < posix.size() && posix[j] == ']') {
    out->append("\\]");
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
        out->append("[:");
        out->append(inner);
        out->append(":]");
      } else if (inner.size() == 1) {
        appendLiteral(out, inner[0]);
      } else {
        *err = fail(std::string("collating element [") + kind + std::string(inner) + kind +
                        "] is not supported by RE2",
                    j);
        return false;
      }
      j = end + 2;
      continue;
    }
    if (c == '\\' || c == '[') {
      out->push_back('\\');  // literal in POSIX, an escape (or class start) in RE2
      out->push_back(c);
      ++j;
      continue;
    }
    out->push_back(c);
    ++j;
  }
  out->push_back(']');
  *pos = j;
  return true;
}

}  // namespace

RegexpTranslation translatePosixToRe2(std::string_view posix, bool newlineSensitive) {
  std::string out;
  out.reserve(posix.size() + 8);
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
        case 'b':
        case 'B':
        case 'w':
        case 'W':
        case 's':
        case 'S':
          out.push_back('\\');
          out.push_back(d);
          break;
        default:
          if (isAsciiAlnum(d)) {
            return fail(std::string("escape \\") + d +
                            " has no defined meaning in a POSIX regular expression",
                        i);
          }
          appendLiteral(&out, d);
          break;
      }
      i += 2;
      continue;
    }
    if (c == '[') {
      RegexpTranslation err;
      if (!translateBracket(posix, &i, newlineSensitive, &out, &err)) {
        return err;
      }
      continue;
    }
    if (c == '(' && i + 1 < posix.size() && posix[i + 1] == '?') {
      return fail("\"(?\" is not valid in a POSIX regular expression", i);
    }
    if (c == '{' && i + 1 < posix.size() && posix[i + 1] == ',') {
      out.append("{0");  // glibc reads {,n} as {0,n}
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

}  // namespace relaykit

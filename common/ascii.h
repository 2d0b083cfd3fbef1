// SPDX-License-Identifier: Apache-2.0
// ascii.h: the one ASCII case helper set (Postfix's lowercase(3) and strcasecmp(3) in the C
// locale): only 'A'..'Z' change, every other byte (UTF-8 included) is left as is. Unicode case
// folding of table keys is common/casefold.h. Pure, cannot fail.
#pragma once

#include <string>
#include <string_view>

namespace relaykit {

// 'A'..'Z' to 'a'..'z'; any other byte unchanged.
constexpr char toLowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// `s` with ASCII letters lower-cased.
std::string toLowerAscii(std::string_view s);

// ASCII case-insensitive equality. Inline: header names are compared several times per header.
inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (toLowerAscii(a[i]) != toLowerAscii(b[i])) {
      return false;
    }
  }
  return true;
}

// True when `text` starts with `prefix`, ASCII case-insensitively.
inline bool startsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && equalsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

// `s` without leading and trailing spaces and tabs.
std::string_view trimBlanks(std::string_view s);

}  // namespace relaykit

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

// ASCII case-insensitive equality.
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// True when `text` starts with `prefix`, ASCII case-insensitively.
bool startsWithIgnoreCase(std::string_view text, std::string_view prefix);

// `s` without leading and trailing spaces and tabs.
std::string_view trimBlanks(std::string_view s);

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// casefold.h: how Postfix folds and screens the keys of its indexed tables (hash:, texthash:).
//
// With smtputf8_enable = no, Postfix lower-cases ASCII letters only (lowercase(3)). With
// smtputf8_enable = yes (Postfix's default at compatibility_level >= 1, and Debian's stock
// main.cf), a key that is not well-formed UTF-8 is never looked up (postmap: "non-UTF-8 key ...
// malformed UTF-8 or invalid codepoint"; a table line that is not UTF-8 is ignored), and a key
// with non-ASCII characters is case-folded with ICU's default full case folding, as Postfix's
// casefold(3) does (so "STRAßE" and "strasse" are one key). Pattern tables are never folded.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace relaykit {

// True when `s` is well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool isValidUtf8(std::string_view s);

// The key an indexed table stores and looks up for `key`; nullopt when smtputf8 is on and the
// key is not well-formed UTF-8 (Postfix then finds nothing).
std::optional<std::string> foldTableKey(std::string_view key, bool smtputf8);

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// rfc2047.h: RFC 2047 encoded-words ("=?UTF-8?B?...?=") in header text.
//
// decode() turns every well-formed encoded-word into UTF-8 (charsets UTF-8, US-ASCII, ISO-8859-1,
// ISO-8859-15 and Windows-1252; B and Q encodings; RFC 2231 "charset*lang" accepted) and drops the
// whitespace between adjacent encoded-words, as RFC 2047 section 6.2 says. A malformed word, or one
// in an unknown charset, is kept verbatim: decode never fails. encodePhrase() produces the shortest
// safe form of a display name: as is when it is a plain atom sequence, a quoted-string when it is
// ASCII with specials, and UTF-8 encoded-words (each at most 75 characters, never splitting a
// character) when it holds non-ASCII text, control characters (TAB aside) or "=?" (text that
// would otherwise read as an encoded-word). Any bytes survive encodePhrase() then a mailbox's
// displayText() (milters/address_list.h) unchanged.
#pragma once

#include <string>
#include <string_view>

namespace relaykit::milter {

// Longest encoded-word RFC 2047 allows.
inline constexpr size_t kMaxEncodedWordLength = 75;

// Decodes every encoded-word in `text` (unstructured text or a phrase) to UTF-8.
std::string decodeEncodedWords(std::string_view text);

// True when `text` contains at least one well-formed, decodable encoded-word.
bool hasEncodedWords(std::string_view text);

// A display name (UTF-8) written as an RFC 5322 phrase: atoms, a quoted-string, or encoded-words.
std::string encodePhrase(std::string_view utf8);

// Converts ISO-8859-1 bytes to UTF-8.
std::string latin1ToUtf8(std::string_view latin1);

}  // namespace relaykit::milter

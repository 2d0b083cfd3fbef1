// SPDX-License-Identifier: Apache-2.0
// casefold.cc: table-key folding as Postfix does it (see casefold.h). ICU does the Unicode part,
// the same library Postfix's casefold(3) uses.
#include "common/casefold.h"

#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include "common/address.h"

namespace relaykit {

bool isValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // a continuation byte first, an overlong 2-byte lead, or beyond U+10FFFF
    }
    if (i + len > n) {
      return false;
    }
    for (size_t k = 1; k < len; ++k) {
      const unsigned char t = static_cast<unsigned char>(s[i + k]);
      if ((t & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (t & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

std::optional<std::string> foldTableKey(std::string_view key, bool smtputf8) {
  if (!smtputf8) {
    return toLowerAscii(key);
  }
  bool ascii = true;
  for (char c : key) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) {
    return toLowerAscii(key);
  }
  if (!isValidUtf8(key)) {
    return std::nullopt;
  }
  icu::UnicodeString u =
      icu::UnicodeString::fromUTF8(icu::StringPiece(key.data(), static_cast<int32_t>(key.size())));
  u.foldCase(U_FOLD_CASE_DEFAULT);
  std::string out;
  u.toUTF8String(out);
  return out;
}

}  // namespace relaykit

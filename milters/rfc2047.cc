// SPDX-License-Identifier: Apache-2.0
// rfc2047.cc: RFC 2047 decoding and phrase encoding (see rfc2047.h for the contract).
#include "milters/rfc2047.h"

#include <cctype>
#include <optional>
#include <string>

#include "common/ascii.h"
#include "common/base64.h"

namespace relaykit::milter {
namespace {

void appendUtf8(std::string* out, unsigned cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Windows-1252 0x80-0x9F; 0 where undefined (kept as the Latin-1 control).
constexpr unsigned kCp1252High[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

std::optional<std::string> toUtf8(std::string_view charset, const std::string& bytes) {
  std::string cs = toLowerAscii(charset);
  size_t star = cs.find('*');  // RFC 2231 language suffix
  if (star != std::string::npos) {
    cs.resize(star);
  }
  if (cs == "utf-8" || cs == "utf8" || cs == "us-ascii" || cs == "ascii") {
    return bytes;
  }
  bool latin1 = cs == "iso-8859-1" || cs == "latin1" || cs == "iso_8859-1";
  bool latin9 = cs == "iso-8859-15";
  bool cp1252 = cs == "windows-1252" || cs == "cp1252";
  if (!latin1 && !latin9 && !cp1252) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    unsigned cp = c;
    if (cp1252 && c >= 0x80 && c < 0xA0 && kCp1252High[c - 0x80] != 0) {
      cp = kCp1252High[c - 0x80];
    } else if (latin9) {
      switch (c) {
        case 0xA4:
          cp = 0x20AC;
          break;
        case 0xA6:
          cp = 0x0160;
          break;
        case 0xA8:
          cp = 0x0161;
          break;
        case 0xB4:
          cp = 0x017D;
          break;
        case 0xB8:
          cp = 0x017E;
          break;
        case 0xBC:
          cp = 0x0152;
          break;
        case 0xBD:
          cp = 0x0153;
          break;
        case 0xBE:
          cp = 0x0178;
          break;
        default:
          break;
      }
    }
    appendUtf8(&out, cp);
  }
  return out;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::optional<std::string> decodeQ(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '_') {
      out.push_back(' ');
    } else if (c == '=') {
      if (i + 2 >= in.size()) {
        return std::nullopt;
      }
      int hi = hexValue(in[i + 1]);
      int lo = hexValue(in[i + 2]);
      if (hi < 0 || lo < 0) {
        return std::nullopt;
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Tries to read one encoded-word at text[pos]; on success sets *end past it and returns UTF-8.
std::optional<std::string> readEncodedWord(std::string_view text, size_t pos, size_t* end) {
  if (text.compare(pos, 2, "=?") != 0) {
    return std::nullopt;
  }
  size_t q1 = text.find('?', pos + 2);
  if (q1 == std::string_view::npos || q1 + 2 >= text.size() || text[q1 + 2] != '?') {
    return std::nullopt;
  }
  char enc = static_cast<char>(std::toupper(static_cast<unsigned char>(text[q1 + 1])));
  size_t close = text.find("?=", q1 + 3);
  if (close == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view charset = text.substr(pos + 2, q1 - pos - 2);
  std::string_view payload = text.substr(q1 + 3, close - q1 - 3);
  if (charset.empty() || payload.find_first_of(" \t\r\n") != std::string_view::npos) {
    return std::nullopt;
  }
  std::optional<std::string> bytes;
  if (enc == 'B') {
    bytes = base64DecodeLenient(payload);
  } else if (enc == 'Q') {
    bytes = decodeQ(payload);
  }
  if (!bytes) {
    return std::nullopt;
  }
  std::optional<std::string> utf8 = toUtf8(charset, *bytes);
  if (!utf8) {
    return std::nullopt;
  }
  *end = close + 2;
  return utf8;
}

bool isWsp(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

}  // namespace

std::string decodeEncodedWords(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  bool lastWasWord = false;
  size_t pendingSpaceStart = std::string::npos;  // whitespace after an encoded-word, in `out`
  while (pos < text.size()) {
    size_t end = 0;
    std::optional<std::string> word;
    if (text[pos] == '=' && (pos == 0 || isWsp(text[pos - 1]) || text[pos - 1] == '"' ||
                             text[pos - 1] == '(' || lastWasWord)) {
      word = readEncodedWord(text, pos, &end);
    }
    if (word) {
      if (lastWasWord && pendingSpaceStart != std::string::npos) {
        out.resize(pendingSpaceStart);  // whitespace between two encoded-words disappears
      }
      out += *word;
      pos = end;
      lastWasWord = true;
      pendingSpaceStart = out.size();
      continue;
    }
    if (isWsp(text[pos])) {
      out.push_back(text[pos]);
      ++pos;
      continue;
    }
    lastWasWord = false;
    pendingSpaceStart = std::string::npos;
    out.push_back(text[pos]);
    ++pos;
  }
  return out;
}

bool hasEncodedWords(std::string_view text) {
  for (size_t pos = text.find("=?"); pos != std::string_view::npos;
       pos = text.find("=?", pos + 1)) {
    size_t end = 0;
    if (readEncodedWord(text, pos, &end)) {
      return true;
    }
  }
  return false;
}

std::string latin1ToUtf8(std::string_view latin1) {
  return *toUtf8("iso-8859-1", std::string(latin1));
}

std::string encodePhrase(std::string_view utf8) {
  // Text a reader would decode differently must itself be encoded: 8-bit bytes, control
  // characters other than TAB (not even a quoted-string carries CR or LF safely), and "=?",
  // which could start an encoded-word (inside a quoted-string too: decoders accept that).
  bool encode = utf8.find("=?") != std::string_view::npos;
  bool needsQuotes = utf8.empty();
  for (unsigned char c : utf8) {
    if (c >= 0x80 || (c < 0x20 && c != '\t') || c == 0x7F) {
      encode = true;
    } else if (c == '\t' || std::string_view("()<>[]:;@\\,.\"").find(static_cast<char>(c)) !=
                                std::string_view::npos) {
      needsQuotes = true;
    }
  }
  if (!encode) {
    bool doubleSpace = !utf8.empty() && (utf8.find("  ") != std::string_view::npos ||
                                         utf8.front() == ' ' || utf8.back() == ' ');
    if (!needsQuotes && !doubleSpace) {
      return std::string(utf8);
    }
    std::string out = "\"";
    for (char c : utf8) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
      }
      out.push_back(c);
    }
    out.push_back('"');
    return out;
  }
  // Base64 UTF-8 encoded-words, each <= 75 chars: prefix "=?UTF-8?B?" (10) + "?=" (2) leaves
  // 63 chars of base64, i.e. at most 45 bytes of text per word; never split a UTF-8 sequence.
  constexpr size_t kMaxBytesPerWord = 45;
  std::string out;
  size_t pos = 0;
  while (pos < utf8.size()) {
    size_t len = std::min(kMaxBytesPerWord, utf8.size() - pos);
    while (pos + len < utf8.size() && len > 0 &&
           (static_cast<unsigned char>(utf8[pos + len]) & 0xC0) == 0x80) {
      --len;  // do not cut inside a multi-byte character
    }
    if (len == 0) {
      len = std::min(kMaxBytesPerWord, utf8.size() - pos);
    }
    std::string_view chunk = utf8.substr(pos, len);
    if (!out.empty()) {
      out.push_back(' ');
    }
    out += "=?UTF-8?B?";
    out += base64Encode(chunk);
    out += "?=";
    pos += len;
  }
  return out;
}

}  // namespace relaykit::milter

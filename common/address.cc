// SPDX-License-Identifier: Apache-2.0
// address.cc: quoting, unquoting and extension splitting as Postfix's quote_822_local.c,
// split_addr.c and strip_addr.c do them (re-implemented from their documented behaviour).
#include "common/address.h"

#include <cstring>

namespace relaykit {
namespace {

constexpr std::string_view kPostmaster = "postmaster";
constexpr std::string_view kMailerDaemon = "MAILER-DAEMON";
constexpr std::string_view kDoubleBounce = "double-bounce";  // double_bounce_sender default
constexpr std::string_view kOwnerPrefix = "owner-";
constexpr std::string_view kRequestSuffix = "-request";

bool isControl(unsigned char ch) {
  return ch < 0x20 || ch == 0x7f;
}

// RFC 822 dot-string test of quote_822_local.c, 8-bit clean.
bool isDotString(std::string_view local) {
  if (local.empty() || local.front() == '.' || local.back() == '.') {
    return false;
  }
  for (size_t i = 0; i < local.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(local[i]);
    if (ch == '.' && i + 1 < local.size() && local[i + 1] == '.') {
      return false;
    }
    if (ch == ' ' || isControl(ch)) {
      return false;
    }
    if (std::strchr("()<>@,;:\\\"[]", ch) != nullptr && ch != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string unquoteLocalpart(std::string_view external) {
  // Fast path (nearly every key): nothing quoted or escaped, so internal == external.
  if (external.find('"') == std::string_view::npos &&
      external.find('\\') == std::string_view::npos) {
    return std::string(external);
  }
  std::string out;
  out.reserve(external.size());
  size_t start = 0;
  if (!external.empty() && external.front() == '@') {
    const size_t colon = external.find(':');
    if (colon != std::string_view::npos) {
      start = colon + 1;
      out.append(external.substr(0, start));
    }
  }
  bool inQuote = false;
  size_t bareAtOut = std::string::npos;  // where the last unquoted '@' landed in `out`
  size_t bareAtIn = 0;
  for (size_t i = start; i < external.size(); ++i) {
    const char ch = external[i];
    if (ch == '"') {
      inQuote = !inQuote;
      continue;
    }
    if (ch == '@') {
      if (!inQuote) {
        bareAtOut = out.size();
        bareAtIn = i;
      }
    } else if (ch == '\\') {
      if (i + 1 >= external.size()) {
        continue;
      }
      ++i;
    }
    out.push_back(external[i]);
  }
  if (bareAtOut != std::string::npos) {
    // Text after the last unquoted '@' is copied as is.
    out.resize(bareAtOut);
    out.append(external.substr(bareAtIn));
  }
  return out;
}

std::string quoteLocalpart(std::string_view internal, bool bareLocalpart) {
  size_t start = 0;
  if (!internal.empty() && internal.front() == '@') {
    const size_t colon = internal.find(':');
    if (colon != std::string_view::npos) {
      start = colon + 1;
    }
  }
  size_t end = internal.size();
  if (!bareLocalpart) {
    const size_t at = internal.rfind('@');
    if (at != std::string_view::npos && at >= start) {
      end = at;
    }
  }
  const std::string_view local = internal.substr(start, end - start);
  if (isDotString(local)) {
    return std::string(internal);
  }
  std::string out(internal.substr(0, start));
  out.push_back('"');
  for (const char ch : local) {
    if (ch == '"' || ch == '\\' || ch == '\r') {
      out.push_back('\\');
    }
    out.push_back(ch);
  }
  out.push_back('"');
  out.append(internal.substr(end));
  return out;
}

size_t findExtensionDelimiter(std::string_view localpart, std::string_view delimiters) {
  if (delimiters.empty()) {
    return std::string_view::npos;
  }
  if (equalsIgnoreCase(localpart, kPostmaster) || equalsIgnoreCase(localpart, kMailerDaemon) ||
      equalsIgnoreCase(localpart, kDoubleBounce)) {
    return std::string_view::npos;
  }
  if (delimiters.find('-') != std::string_view::npos) {
    if (localpart.size() >= kOwnerPrefix.size() &&
        equalsIgnoreCase(localpart.substr(0, kOwnerPrefix.size()), kOwnerPrefix)) {
      return std::string_view::npos;
    }
    if (localpart.size() > kRequestSuffix.size() &&
        equalsIgnoreCase(localpart.substr(localpart.size() - kRequestSuffix.size()),
                         kRequestSuffix)) {
      return std::string_view::npos;
    }
  }
  const size_t pos =
      delimiters.size() == 1 ? localpart.find(delimiters[0]) : localpart.find_first_of(delimiters);
  if (pos == 0 || pos == std::string_view::npos) {
    return std::string_view::npos;  // never an empty user
  }
  return pos;
}

std::optional<StrippedAddress> stripExtension(std::string_view internal,
                                              std::string_view delimiters) {
  if (delimiters.empty()) {
    return std::nullopt;
  }
  // Fast path (nearly every key): no delimiter at all. A one-character set is a memchr.
  const size_t any =
      delimiters.size() == 1 ? internal.find(delimiters[0]) : internal.find_first_of(delimiters);
  if (any == std::string_view::npos) {
    return std::nullopt;
  }
  const size_t at = internal.rfind('@');
  const std::string_view local = at == std::string_view::npos ? internal : internal.substr(0, at);
  const size_t pos = findExtensionDelimiter(local, delimiters);
  if (pos == std::string_view::npos) {
    return std::nullopt;
  }
  StrippedAddress out;
  out.extension = std::string(local.substr(pos));
  out.address = std::string(local.substr(0, pos));
  if (at != std::string_view::npos) {
    out.address.append(internal.substr(at));
  }
  return out;
}

namespace {

// Position of the first (or last) `c` outside quoted strings and domain literals, or npos.
size_t findUnquoted(std::string_view s, char c, bool last) {
  size_t found = std::string_view::npos;
  bool quoted = false;
  bool literal = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char ch = s[i];
    if (ch == '\\') {
      ++i;
    } else if (quoted) {
      quoted = ch != '"';
    } else if (literal) {
      literal = ch != ']';
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == '[') {
      literal = true;
    } else if (ch == c) {
      found = i;
      if (!last) {
        break;
      }
    }
  }
  return found;
}

}  // namespace

std::string rewriteLocalContext(std::string_view sender, std::string_view myorigin) {
  // smtpd hands cleanup the internal form, which cleanup quotes again: "a@b" becomes a@b.
  std::string s = quoteLocalpart(unquoteLocalpart(sender));
  if (!s.empty() && s.front() == '@') {  // source route "@a,@b:user@domain"
    size_t colon = findUnquoted(s, ':', false);
    if (colon != std::string::npos && colon + 1 < s.size()) {
      s.erase(0, colon + 1);
    }
  }
  if (findUnquoted(s, '@', true) == std::string::npos) {
    size_t bang = findUnquoted(s, '!', false);
    size_t percent = findUnquoted(s, '%', true);
    if (bang != std::string::npos) {
      s = s.substr(bang + 1) + "@" + s.substr(0, bang);
    } else if (percent != std::string::npos) {
      s[percent] = '@';
    } else if (!myorigin.empty()) {
      s += '@';
      s += myorigin;
    }
  }
  // One trailing dot, but not "..", "@." or a dot inside quotes.
  if (s.size() >= 2 && s.back() == '.' && s[s.size() - 2] != '.' && s[s.size() - 2] != '@' &&
      findUnquoted(s, '.', true) == s.size() - 1) {
    s.pop_back();
  }
  return quoteLocalpart(unquoteLocalpart(s));
}

}  // namespace relaykit

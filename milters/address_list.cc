// SPDX-License-Identifier: Apache-2.0
// address_list.cc: RFC 5322 address-list tokenizer and parser (see address_list.h).
#include "milters/address_list.h"

#include <algorithm>

#include "common/address.h"
#include "milters/rfc2047.h"

namespace relaykit::milter {
namespace {

enum class TokenKind { kAtom, kQuoted, kLiteral, kSpecial };

struct Token {
  TokenKind kind;
  size_t begin;
  size_t end;
  std::string value;  // atom text, unescaped quoted content, literal text, or the special char
  char special() const { return kind == TokenKind::kSpecial ? value[0] : '\0'; }
  bool isWord() const { return kind == TokenKind::kAtom || kind == TokenKind::kQuoted; }
};

bool isSpecial(char c) {
  return c == '<' || c == '>' || c == '@' || c == ',' || c == ';' || c == ':' || c == '.';
}

bool isWsp(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

struct Range {
  size_t begin;
  size_t end;
};

// Splits `text` into tokens; comments are not tokens, their ranges go to `comments`.
Status tokenize(std::string_view text, std::vector<Token>* out, std::vector<Range>* comments) {
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (isWsp(c)) {
      ++i;
    } else if (c == '(') {
      int depth = 0;
      size_t start = i;
      for (; i < text.size(); ++i) {
        if (text[i] == '\\') {
          ++i;
        } else if (text[i] == '(') {
          ++depth;
        } else if (text[i] == ')' && --depth == 0) {
          break;
        }
      }
      if (i >= text.size()) {
        return Status::error("unterminated comment at offset " + std::to_string(start));
      }
      ++i;
      comments->push_back({start, i});
    } else if (c == '"') {
      size_t start = i++;
      std::string value;
      bool closed = false;
      for (; i < text.size(); ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) {
          value.push_back(text[++i]);
        } else if (text[i] == '"') {
          closed = true;
          break;
        } else if (text[i] != '\r' && text[i] != '\n') {
          value.push_back(text[i]);
        }
      }
      if (!closed) {
        return Status::error("unterminated quoted string at offset " + std::to_string(start));
      }
      ++i;
      out->push_back({TokenKind::kQuoted, start, i, std::move(value)});
    } else if (c == '[') {
      size_t start = i;
      size_t close = text.find(']', i);
      if (close == std::string_view::npos) {
        return Status::error("unterminated domain literal at offset " + std::to_string(start));
      }
      i = close + 1;
      out->push_back({TokenKind::kLiteral, start, i, std::string(text.substr(start, i - start))});
    } else if (isSpecial(c)) {
      out->push_back({TokenKind::kSpecial, i, i + 1, std::string(1, c)});
      ++i;
    } else if (c == ')' || c == ']' || c == '\\') {
      return Status::error(std::string("unexpected '") + c + "' at offset " + std::to_string(i));
    } else {
      size_t start = i;
      while (i < text.size() && !isWsp(text[i]) && !isSpecial(text[i]) && text[i] != '(' &&
             text[i] != '"' && text[i] != '[' && text[i] != ')' && text[i] != ']' &&
             text[i] != '\\') {
        ++i;
      }
      out->push_back({TokenKind::kAtom, start, i, std::string(text.substr(start, i - start))});
    }
  }
  return Status::ok();
}

// Builds a mailbox from addr-spec tokens: word *("." word) ["@" domain]. Like Postfix, the last
// '@' splits: "a@b@x" has the localpart "a@b".
Status makeMailbox(std::string_view text, const std::vector<Token>& toks,
                   const std::vector<Range>& comments, size_t from, size_t to, Mailbox* box) {
  if (from >= to) {
    return Status::error("empty address");
  }
  size_t at = to;
  for (size_t k = from; k < to; ++k) {
    if (toks[k].special() == '@') {
      at = k;
    }
  }
  size_t i = from;
  bool expectWord = true;
  for (; i < at; ++i) {
    const Token& t = toks[i];
    bool separator = t.special() == '.' || t.special() == '@';
    if (expectWord ? !t.isWord() : !separator) {
      // Tolerate obsolete "a..b" and trailing dots in localparts, which Postfix accepts too.
      if (!(separator && expectWord)) {
        return Status::error("unexpected \"" + t.value + "\" in address at offset " +
                             std::to_string(t.begin));
      }
    }
    box->localPart += t.value;
    expectWord = separator;
  }
  if (i < to) {  // '@' domain
    ++i;
    if (i >= to) {
      return Status::error("missing domain after '@'");
    }
    for (; i < to; ++i) {
      const Token& t = toks[i];
      if (t.kind == TokenKind::kQuoted || (t.kind == TokenKind::kSpecial && t.special() != '.')) {
        return Status::error("unexpected \"" + t.value + "\" in domain at offset " +
                             std::to_string(t.begin));
      }
      box->domain += t.value;
    }
    while (!box->domain.empty() && box->domain.back() == '.') {
      box->domain.pop_back();
    }
    if (box->domain.empty()) {
      return Status::error("empty domain");
    }
  }
  box->specBegin = toks[from].begin;
  box->specEnd = toks[to - 1].end;
  for (const Range& c : comments) {
    if (c.begin > box->specBegin && c.end < box->specEnd) {
      box->comments.emplace_back(text.substr(c.begin, c.end - c.begin));
    }
  }
  return Status::ok();
}

std::string rawRange(std::string_view text, const std::vector<Token>& toks, size_t from,
                     size_t to) {
  if (from >= to) {
    return std::string();
  }
  return std::string(text.substr(toks[from].begin, toks[to - 1].end - toks[from].begin));
}

}  // namespace

std::string Mailbox::address() const {
  std::string out = quoteLocalpart(localPart, /*bareLocalpart=*/true);
  if (!domain.empty()) {
    out += '@';
    out += domain;
  }
  return out;
}

std::string Mailbox::displayText() const {
  // Quotes and quoted-pairs are resolved first, and encoded-words decoded in what remains, so a
  // '"' or '\\' that an encoded-word decodes to is text, never syntax. Comments are kept as
  // written (a '"' inside one is a character).
  std::string unquoted;
  bool quoted = false;
  int commentDepth = 0;
  for (size_t i = 0; i < displayName.size(); ++i) {
    char c = displayName[i];
    if (quoted || commentDepth > 0) {
      if (c == '\\' && i + 1 < displayName.size()) {
        if (commentDepth > 0) {
          unquoted.push_back(c);
        }
        unquoted.push_back(displayName[++i]);
        continue;
      }
      if (quoted && c == '"') {
        quoted = false;
        continue;
      }
      if (commentDepth > 0) {
        commentDepth += c == '(' ? 1 : c == ')' ? -1 : 0;
      }
      unquoted.push_back(c);
    } else if (c == '"') {
      quoted = true;
    } else {
      if (c == '(') {
        commentDepth = 1;
      }
      unquoted.push_back(c);
    }
  }
  return decodeEncodedWords(unquoted);
}

StatusOr<std::vector<Mailbox>> parseAddressList(std::string_view text) {
  if (text.size() > kMaxAddressListBytes) {
    return Status::error("address list longer than " + std::to_string(kMaxAddressListBytes) +
                         " bytes");
  }
  std::vector<Token> toks;
  std::vector<Range> comments;
  Status st = tokenize(text, &toks, &comments);
  if (!st) {
    return st;
  }
  std::vector<Mailbox> result;
  bool inGroup = false;
  std::string group;
  // The end of the last address when no list separator has followed it yet.
  size_t unseparatedEnd = std::string::npos;
  size_t i = 0;
  while (i < toks.size()) {
    size_t start = i;
    while (i < toks.size() && toks[i].special() != '<' && toks[i].special() != ':' &&
           toks[i].special() != ',' && toks[i].special() != ';' && toks[i].special() != '>') {
      ++i;
    }
    char delim = i < toks.size() ? toks[i].special() : '\0';
    if (delim == '>' && start == i) {
      return Status::error("unexpected '>' at offset " + std::to_string(toks[i].begin));
    }
    // A stray '>' after a bare address ends it, like ','; Postfix ignores it too.
    if (delim == ':' && !inGroup) {
      if (start == i) {
        return Status::error("group without a name at offset " + std::to_string(toks[i].begin));
      }
      group = rawRange(text, toks, start, i);
      inGroup = true;
      ++i;
      continue;
    }
    // A ';' that closes no group separates like ',' (Postfix's parser ignores it too).
    if (delim == '<') {
      Mailbox box;
      box.angle = true;
      box.displayName = rawRange(text, toks, start, i);
      box.group = inGroup ? group : std::string();
      size_t open = i++;
      size_t addrStart = i;
      while (i < toks.size() && toks[i].special() != '>') {
        char s = toks[i].special();
        if (s == '<' || s == ',' || s == ';') {
          if (s == ',' && addrStart < i && toks[addrStart].special() == '@') {
            ++i;  // obsolete route "@a,@b:"
            continue;
          }
          return Status::error(std::string("unexpected '") + s + "' in angle address at offset " +
                               std::to_string(toks[i].begin));
        }
        if (s == ':') {
          addrStart = i + 1;  // drop an obsolete source route
        }
        ++i;
      }
      if (i >= toks.size()) {
        return Status::error("unterminated angle address at offset " +
                             std::to_string(toks[open].begin));
      }
      if (addrStart < i) {  // "<>" yields no mailbox
        box.routeBegin = toks[open + 1].begin;
        st = makeMailbox(text, toks, comments, addrStart, i, &box);
        if (!st) {
          return st;
        }
        box.missingSeparatorAt = unseparatedEnd;
        result.push_back(std::move(box));
      }
      unseparatedEnd = toks[i].end;
      ++i;  // '>'
      if (i < toks.size()) {
        char s = toks[i].special();
        if (s == ',' || s == ';') {
          inGroup = inGroup && s != ';';
          unseparatedEnd = std::string::npos;
          ++i;
        }
        // Anything else starts the next address: Postfix adds the missing comma.
      }
    } else {
      // Bare addresses. Like Postfix's parser, two words with nothing between them start a new
      // address: "John Smith a@x" is three addresses ("John", "Smith", "a@x").
      size_t from = start;
      for (size_t k = start; k <= i && from < i; ++k) {
        if (k < i && (k == from || !toks[k].isWord() || !toks[k - 1].isWord())) {
          continue;
        }
        Mailbox box;
        box.group = inGroup ? group : std::string();
        box.routeBegin = toks[from].begin;
        st = makeMailbox(text, toks, comments, from, k, &box);
        if (!st) {
          return st;
        }
        box.missingSeparatorAt = unseparatedEnd;
        unseparatedEnd = toks[k - 1].end;
        result.push_back(std::move(box));
        from = k;
      }
      if (delim == ';') {
        inGroup = false;
      }
      if (i < toks.size()) {
        unseparatedEnd = std::string::npos;  // ',', ';' or a stray '>' ends the address
        ++i;
      }
    }
    if (result.size() > kMaxMailboxes) {
      return Status::error("more than " + std::to_string(kMaxMailboxes) + " addresses");
    }
  }
  if (inGroup) {
    return Status::error("group \"" + group + "\" not closed with ';'");
  }
  return result;
}

std::string replacementText(const Mailbox& box, std::string_view address) {
  std::string out(address);
  for (const std::string& c : box.comments) {
    out += ' ';
    out += c;
  }
  return out;
}

std::string spliceAddresses(std::string_view text, std::vector<AddressReplacement> replacements) {
  // Stable, and an insertion (empty range) before a replacement that starts at the same place.
  std::stable_sort(replacements.begin(), replacements.end(),
                   [](const AddressReplacement& a, const AddressReplacement& b) {
                     if (a.specBegin != b.specBegin) {
                       return a.specBegin < b.specBegin;
                     }
                     return a.specEnd == a.specBegin && b.specEnd != b.specBegin;
                   });
  std::string out;
  size_t pos = 0;
  for (const AddressReplacement& r : replacements) {
    if (r.specBegin < pos || r.specEnd < r.specBegin || r.specEnd > text.size()) {
      continue;  // overlapping or out of range: ignore (callers pass parser output)
    }
    out.append(text.substr(pos, r.specBegin - pos));
    out += r.address;
    pos = r.specEnd;
  }
  out.append(text.substr(pos));
  return out;
}

std::string rewriteAddressList(std::string_view text, const std::vector<Mailbox>& boxes,
                               std::vector<AddressReplacement> replacements) {
  if (replacements.empty()) {
    return std::string(text);
  }
  for (const Mailbox& box : boxes) {
    size_t at = box.missingSeparatorAt;
    if (at == std::string::npos || at > text.size()) {
      continue;
    }
    bool spaceFollows = at < text.size() && isWsp(text[at]);
    replacements.push_back({at, at, spaceFollows ? "," : ", "});
  }
  return spliceAddresses(text, std::move(replacements));
}

}  // namespace relaykit::milter

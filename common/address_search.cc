// SPDX-License-Identifier: Apache-2.0
// address_search.cc: key forms and result processing of Postfix's address searches
// (mail_addr_find.c, mail_addr_map.c, trivial-rewrite transport.c; see address_search.h).
#include "common/address_search.h"

#include <algorithm>
#include <optional>

#include "common/address.h"
#include "common/casefold.h"

namespace relaykit {
namespace {

constexpr std::string_view kNullSender = "<>";
constexpr std::string_view kTransportWildcard = "*";

// mail_addr_find(3)'s test: myorigin as is, then resolve_local(3) (one trailing dot stripped).
SearchKey plainKey(std::string_view key, bool full, bool split) {
  SearchKey form;
  form.key = key;
  form.full = full;
  form.extensionSplit = split;
  return form;
}

bool isLocalDomain(std::string_view domain, const PostfixSettings& postfix) {
  if (!postfix.myorigin.empty() && equalsIgnoreCase(domain, postfix.myorigin)) {
    return true;
  }
  if (!domain.empty() && domain.back() == '.') {
    domain.remove_suffix(1);
  }
  if (domain.empty() || domain.back() == '.') {
    return false;
  }
  for (const std::string& d : postfix.localDomains) {
    if (equalsIgnoreCase(domain, d)) {
      return true;
    }
  }
  return false;
}

// Inserts `extension` before the last '@' of one external-form address.
std::string addExtension(std::string_view address, std::string_view extension) {
  std::string internal = unquoteLocalpart(address);
  const size_t at = internal.rfind('@');
  if (at == std::string::npos) {
    internal.append(extension);
  } else {
    internal.insert(at, extension);
  }
  return quoteLocalpart(internal);
}

}  // namespace

std::string_view SearchPlan::own(std::string text) {
  owned_.push_back(std::move(text));
  return owned_.back();
}

std::size_t SearchPlan::ownedBytes() const {
  std::size_t bytes =
      internal.capacity() + extension.capacity() + keys.capacity() * sizeof(SearchKey);
  for (const std::string& s : owned_) {
    bytes += s.capacity();
  }
  return bytes;
}

// Adds `external`, and for external-first searches also `internalForm` when it differs.
void SearchPlan::addForm(std::string external, std::string_view internalForm, bool full, bool split,
                         bool externalFirst) {
  const bool differs = externalFirst && external != internalForm;
  const std::string_view ext = own(std::move(external));
  keys.push_back(plainKey(ext, full, split));
  if (differs) {
    keys.push_back(plainKey(own(std::string(internalForm)), full, split));
  }
}

void SearchPlan::planMailAddrFind(std::string_view key, const PostfixSettings& postfix,
                                  bool externalFirst) {
  addForm(std::string(key), internal, true, false, externalFirst);
  const auto stripped = stripExtension(internal, postfix.recipientDelimiter);
  if (stripped) {
    extension = stripped->extension;
    addForm(quoteLocalpart(stripped->address), stripped->address, false, true, externalFirst);
  }
  const size_t at = internal.rfind('@');
  if (at == std::string::npos) {
    return;
  }
  if (isLocalDomain(std::string_view(internal).substr(at + 1), postfix)) {
    const std::string local = internal.substr(0, at);
    addForm(quoteLocalpart(local, true), local, false, false, externalFirst);
    if (stripped) {
      const std::string bare = stripped->address.substr(0, stripped->address.rfind('@'));
      addForm(quoteLocalpart(bare, true), bare, false, true, externalFirst);
    }
  }
  keys.push_back(plainKey(std::string_view(internal).substr(at), false, false));
}

void SearchPlan::planTransport(std::string_view key, const PostfixSettings& postfix) {
  const size_t at = internal.rfind('@');
  if (at == std::string::npos) {
    keys.push_back(plainKey(own(std::string(key)), true, false));
    return;
  }
  addForm(std::string(key), internal, true, false, true);
  const auto stripped = stripExtension(internal, postfix.recipientDelimiter);
  if (stripped) {
    extension = stripped->extension;
    addForm(quoteLocalpart(stripped->address), stripped->address, false, true, true);
  }
  // The domain and its parents: suffixes of the domain starting at a dot (".parent") or just
  // after one ("parent"), each a view of `internal`, with the matching suffix of the domain
  // folded once (case folding maps '.' to itself and nothing else to '.', so the dots of both
  // correspond one to one).
  const std::string_view domain = std::string_view(internal).substr(at + 1);
  const std::optional<std::string> foldedText = foldTableKey(domain, postfix.smtputf8Enable);
  const std::string_view folded = foldedText ? own(*foldedText) : std::string_view();
  // Guard the correspondence anyway: with a different number of dots, the sources fold.
  bool prefolded = foldedText.has_value() && std::count(domain.begin(), domain.end(), '.') ==
                                                 std::count(folded.begin(), folded.end(), '.');
  size_t start = 0;
  size_t foldedStart = 0;
  while (start < domain.size()) {
    keys.push_back(SearchKey{domain.substr(start), false, false, prefolded,
                             prefolded ? folded.substr(foldedStart) : std::string_view()});
    const size_t dot = domain.find('.', start + 1);
    if (dot == std::string_view::npos) {
      break;
    }
    start = postfix.parentDomainMatchesSubdomains ? dot + 1 : dot;
    if (prefolded) {
      const size_t foldedDot = folded.find('.', foldedStart + 1);
      if (foldedDot == std::string_view::npos) {
        prefolded = false;  // cannot happen (see above); the sources then fold themselves
      } else {
        foldedStart = postfix.parentDomainMatchesSubdomains ? foldedDot + 1 : foldedDot;
      }
    }
  }
  keys.push_back(plainKey(kTransportWildcard, true, false));
}

SearchPlan::SearchPlan(SearchMode mode, std::string_view key, const PostfixSettings& postfix)
    : internal(unquoteLocalpart(key)) {
  if (key.empty() || mode == SearchMode::kExact ||
      (mode == SearchMode::kSender && key == kNullSender)) {
    keys.push_back(plainKey(own(std::string(key)), true, false));
    return;
  }
  switch (mode) {
    case SearchMode::kAddress:
      planMailAddrFind(key, postfix, false);
      break;
    case SearchMode::kSender:
      planMailAddrFind(key, postfix, true);
      break;
    case SearchMode::kTransport:
      planTransport(key, postfix);
      break;
    case SearchMode::kExact:
      break;
  }
}

SearchPlan planSearch(SearchMode mode, std::string_view key, const PostfixSettings& postfix) {
  return SearchPlan(mode, key, postfix);
}

std::string finishAddressResult(std::string_view value, const SearchPlan& plan,
                                const SearchKey& matched, bool propagate) {
  std::string result(value);
  if (!result.empty() && result.front() == '@') {
    const size_t at = plan.internal.rfind('@');
    std::string local = at == std::string::npos ? plan.internal : plan.internal.substr(0, at);
    if (matched.extensionSplit && local.size() >= plan.extension.size()) {
      local.resize(local.size() - plan.extension.size());
    }
    result = quoteLocalpart(local + result);
  }
  if (!propagate || !matched.extensionSplit || plan.extension.empty()) {
    return result;
  }
  // mail_addr_crunch(): the result may list several addresses; extend each one.
  std::string out;
  bool inQuote = false;
  size_t start = 0;
  for (size_t i = 0; i <= result.size(); ++i) {
    if (i < result.size()) {
      if (result[i] == '\\' && inQuote) {
        ++i;
        continue;
      }
      if (result[i] == '"') {
        inQuote = !inQuote;
      }
      if (result[i] != ',' || inQuote) {
        continue;
      }
    }
    std::string_view one = std::string_view(result).substr(start, i - start);
    while (!one.empty() && (one.front() == ' ' || one.front() == '\t')) {
      one.remove_prefix(1);
    }
    while (!one.empty() && (one.back() == ' ' || one.back() == '\t')) {
      one.remove_suffix(1);
    }
    if (!one.empty()) {
      if (!out.empty()) {
        out += ", ";
      }
      out += addExtension(one, plan.extension);
    }
    start = i + 1;
  }
  return out;
}

}  // namespace relaykit

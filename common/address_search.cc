// address_search.cc: key forms and result processing of Postfix's address searches
// (mail_addr_find.c, mail_addr_map.c, trivial-rewrite transport.c; see address_search.h).
#include "common/address_search.h"

#include "common/address.h"

namespace relaykit {
namespace {

constexpr std::string_view kNullSender = "<>";
constexpr std::string_view kTransportWildcard = "*";

// mail_addr_find(3)'s test: myorigin as is, then resolve_local(3) (one trailing dot stripped).
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

// Adds `external`, and for external-first searches also `internal` when it differs.
void addForm(SearchPlan* plan, std::string external, std::string_view internal, bool full,
             bool split, bool externalFirst) {
  const bool differs = externalFirst && external != internal;
  plan->keys.push_back(SearchKey{std::move(external), full, split});
  if (differs) {
    plan->keys.push_back(SearchKey{std::string(internal), full, split});
  }
}

void planMailAddrFind(SearchPlan* plan, std::string_view key, const PostfixSettings& postfix,
                      bool externalFirst) {
  const std::string& internal = plan->internal;
  addForm(plan, std::string(key), internal, true, false, externalFirst);
  const auto stripped = stripExtension(internal, postfix.recipientDelimiter);
  if (stripped) {
    plan->extension = stripped->extension;
    addForm(plan, quoteLocalpart(stripped->address), stripped->address, false, true, externalFirst);
  }
  const size_t at = internal.rfind('@');
  if (at == std::string::npos) {
    return;
  }
  if (isLocalDomain(std::string_view(internal).substr(at + 1), postfix)) {
    const std::string local = internal.substr(0, at);
    addForm(plan, quoteLocalpart(local, true), local, false, false, externalFirst);
    if (stripped) {
      const std::string bare = stripped->address.substr(0, stripped->address.rfind('@'));
      addForm(plan, quoteLocalpart(bare, true), bare, false, true, externalFirst);
    }
  }
  plan->keys.push_back(SearchKey{internal.substr(at), false, false});
}

void planTransport(SearchPlan* plan, std::string_view key, const PostfixSettings& postfix) {
  const std::string& internal = plan->internal;
  const size_t at = internal.rfind('@');
  if (at == std::string::npos) {
    plan->keys.push_back(SearchKey{std::string(key), true, false});
    return;
  }
  addForm(plan, std::string(key), internal, true, false, true);
  const auto stripped = stripExtension(internal, postfix.recipientDelimiter);
  if (stripped) {
    plan->extension = stripped->extension;
    addForm(plan, quoteLocalpart(stripped->address), stripped->address, false, true, true);
  }
  std::string_view name = std::string_view(internal).substr(at + 1);
  while (!name.empty()) {
    plan->keys.push_back(SearchKey{std::string(name), false, false});
    const size_t dot = name.find('.', 1);
    if (dot == std::string_view::npos) {
      break;
    }
    name = name.substr(postfix.parentDomainMatchesSubdomains ? dot + 1 : dot);
  }
  plan->keys.push_back(SearchKey{std::string(kTransportWildcard), true, false});
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

SearchPlan planSearch(SearchMode mode, std::string_view key, const PostfixSettings& postfix) {
  SearchPlan plan;
  plan.internal = unquoteLocalpart(key);
  if (key.empty() || mode == SearchMode::kExact ||
      (mode == SearchMode::kSender && key == kNullSender)) {
    plan.keys.push_back(SearchKey{std::string(key), true, false});
    return plan;
  }
  switch (mode) {
    case SearchMode::kAddress:
      planMailAddrFind(&plan, key, postfix, false);
      break;
    case SearchMode::kSender:
      planMailAddrFind(&plan, key, postfix, true);
      break;
    case SearchMode::kTransport:
      planTransport(&plan, key, postfix);
      break;
    case SearchMode::kExact:
      break;
  }
  return plan;
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

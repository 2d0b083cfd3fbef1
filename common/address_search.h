// address_search.h: the partial-key searches Postfix performs on its own indexed tables,
// re-implemented for a socketmap that only ever receives the full key.
//
// planSearch() lists, in Postfix's order, the key forms to ask the sources for:
//   kExact     the key.
//   kAddress   mail_addr_map(3)/mail_addr_find(3), MA_FIND_DEFAULT, external-form queries:
//              user+ext@domain (all sources); user@domain (indexed, when an extension was split);
//              for local domains user+ext then user (indexed); @domain (indexed).
//   kSender    the same forms, queried external form first and internal form next when they
//              differ (legacy mail_addr_find); "<>" (null sender) only as itself.
//   kTransport trivial-rewrite transport_lookup(): full, extension-stripped (both external then
//              internal), domain and parent domains as ".parent" (or "parent" with
//              parent_domain_matches_subdomains), then "*" (all sources).
// A key without '@' gets the full form (and, for address/sender, the extension-stripped form,
// as strip_addr works on bare localparts too); transport gets the full form only.
// finishAddressResult() is mail_addr_map()'s result processing. Neither function fails.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/table.h"

namespace relaykit {

struct SearchKey {
  std::string key;
  bool full = false;            // pattern sources (regexp/pcre) are asked only with full keys
  bool extensionSplit = false;  // this form had the address extension stripped off
};

struct SearchPlan {
  std::vector<SearchKey> keys;
  std::string internal;   // the key in internal (unquoted) form
  std::string extension;  // the extension that was split off ("+ext"), if any
};

SearchPlan planSearch(SearchMode mode, std::string_view key, const PostfixSettings& postfix);

// mail_addr_map(): "@domain" results get the original localpart (without the extension when the
// matching form had it stripped); with `propagate` an unmatched extension is put back into the
// localpart of each address of the result. Returns external form.
std::string finishAddressResult(std::string_view value, const SearchPlan& plan,
                                const SearchKey& matched, bool propagate);

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
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
//
// Linear in the key, in time and memory: a plan owns a fixed number of strings (the key, its
// internal form, the extension-stripped and quoted forms, the case-folded domain), each at most
// a few times the key's size; every key form is a string_view into them, never a copy per
// candidate. The parent-domain forms of a transport search are suffixes of the domain and come
// with their case-folded text (SearchKey::folded), so an indexed source answers each of them in
// O(1) unless it holds a key of exactly that length (IndexedSource::lookupFolded): a transport
// search of "x@" followed by 100,000 dots costs O(key + table) time, not O(key^2).
// finishAddressResult() is mail_addr_map()'s result processing. Neither function fails.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "common/table.h"

namespace relaykit {

// One key form to ask the sources for. `key` (and `folded`) view strings owned by the plan: a
// SearchKey is valid only while its SearchPlan lives.
struct SearchKey {
  std::string_view key;
  bool full = false;            // pattern sources (regexp/pcre) are asked only with full keys
  bool extensionSplit = false;  // this form had the address extension stripped off
  bool prefolded = false;       // `folded` holds foldTableKey(key) (transport parent domains)
  std::string_view folded;
};

// A search plan owns the strings its keys view, so it is neither copied nor moved: build it in
// place (`const SearchPlan plan = planSearch(...)` is fine: C++17 elides that copy).
class SearchPlan {
 public:
  SearchPlan(SearchMode mode, std::string_view key, const PostfixSettings& postfix);
  SearchPlan(const SearchPlan&) = delete;
  SearchPlan& operator=(const SearchPlan&) = delete;

  std::vector<SearchKey> keys;
  std::string internal;   // the key in internal (unquoted) form
  std::string extension;  // the extension that was split off ("+ext"), if any

  // Bytes of the strings the plan owns (tests check it stays linear in the key).
  std::size_t ownedBytes() const;

 private:
  // Keeps `text` for the plan's lifetime and returns a view of it (deque: stable addresses).
  std::string_view own(std::string text);
  void planMailAddrFind(std::string_view key, const PostfixSettings& postfix, bool externalFirst);
  void planTransport(std::string_view key, const PostfixSettings& postfix);
  void addForm(std::string external, std::string_view internalForm, bool full, bool split,
               bool externalFirst);

  std::deque<std::string> owned_;
};

SearchPlan planSearch(SearchMode mode, std::string_view key, const PostfixSettings& postfix);

// mail_addr_map(): "@domain" results get the original localpart (without the extension when the
// matching form had it stripped); with `propagate` an unmatched extension is put back into the
// localpart of each address of the result. Returns external form.
std::string finishAddressResult(std::string_view value, const SearchPlan& plan,
                                const SearchKey& matched, bool propagate);

}  // namespace relaykit

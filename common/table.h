// SPDX-License-Identifier: Apache-2.0
// table.h: a lookup table assembled from sources, searched with Postfix's own partial-key rules.
//
// A Table is what a socketmap map name (or a milter rewrite) resolves to. It behaves like
// several tables in one main.cf parameter ("hash:a, regexp:b"): for each key form of the search
// mode in turn, every source is asked in order, and pattern sources (regexp/pcre) only with the
// full key. The first answer wins. Tables are immutable after construction and thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/diagnostics.h"
#include "common/lookup_result.h"
#include "common/regexp_table.h"

namespace relaykit {

// Mirrors the relay's main.cf where lookups depend on it (YAML section `postfix:`).
struct PostfixSettings {
  // Bare "user" keys are only tried for local domains, decided as mail_addr_find(3) does:
  // the domain equals myorigin (case-insensitively, as is), or resolve_local(3) accepts it:
  // with ONE trailing dot stripped (a domain that is empty or still ends in '.' is never
  // local) it equals one of localDomains (mydestination and the [ip] literals of
  // inet_interfaces), case-insensitively. List myorigin under `myorigin` when it is not also
  // in mydestination: "user@myorigin." is local only if myorigin is in mydestination.
  std::string myorigin;
  std::vector<std::string> localDomains;
  // The domain a bare localpart gets (trivial-rewrite's @$myorigin): myorigin, else the first
  // localDomains entry (the interface lists local_domains as "myorigin + mydestination").
  std::string_view origin() const {
    return !myorigin.empty()      ? std::string_view(myorigin)
           : localDomains.empty() ? std::string_view()
                                  : std::string_view(localDomains.front());
  }
  // recipient_delimiter: a SET of characters; the first one found in the localpart splits.
  std::string recipientDelimiter;
  // parent_domain_matches_subdomains lists transport_maps: "example.com" matches sub domains,
  // and the transport search asks "parent" instead of ".parent".
  bool parentDomainMatchesSubdomains = false;
  // smtputf8_enable (Postfix's default "yes" at compatibility_level >= 1): indexed sources fold
  // keys with Unicode case folding, and a key that is not well-formed UTF-8 is found nowhere
  // (Postfix never looks it up). Off: ASCII-only folding, any bytes. common/casefold.h.
  bool smtputf8Enable = true;
};

// Longest key a Table looks up (a socketmap request is at most kMaxSocketmapRequestBytes, map
// name included); a longer key (`relaykit query`, a policy attribute) is a permanent error.
inline constexpr std::size_t kMaxLookupKeyBytes = 100000;

enum class SearchMode {
  kExact,      // the key as given
  kAddress,    // generic(5)/canonical(5): mail_addr_map semantics
  kTransport,  // transport(5)
  kSender,     // sender_dependent_relayhost_maps: mail_addr_find semantics, null sender "<>"
};

// One source of a table (like one table in a main.cf parameter).
class TableSource {
 public:
  virtual ~TableSource() = default;
  // True for pattern sources (regexp, pcre): asked only with the full key, in original case.
  virtual bool isPattern() const = 0;
  // Looks up one key form. Indexed sources fold the key to lower case themselves (as Postfix
  // does for hash tables); pattern sources see the key as given.
  virtual LookupResult lookup(std::string_view key) const = 0;
  // Looks up a partial key form whose folded text the caller already has: `folded` is
  // foldTableKey(key, smtputf8). Indexed sources use it to skip folding and to answer NotFound
  // in O(1) when they hold no key of that length; the default asks lookup(key).
  virtual LookupResult lookupFolded(std::string_view key, std::string_view folded,
                                    bool smtputf8) const {
    (void)folded;
    (void)smtputf8;
    return lookup(key);
  }
  // "entries", "regexp", "hash:/etc/postfix/generic", ... for logs and `relaykit check`.
  virtual std::string describe() const = 0;
};

struct TableOptions {
  SearchMode search = SearchMode::kExact;
  // propagate_unmatched_extensions for this table (address search only): when
  // user+ext@domain matched as user@domain, append +ext to the result's localpart.
  // Postfix's default is on for canonical, off for generic.
  bool propagateUnmatchedExtensions = false;
};

class Table {
 public:
  Table(std::string name, TableOptions options, std::vector<std::unique_ptr<TableSource>> sources,
        std::shared_ptr<const PostfixSettings> postfix);

  // Full search for one key, exactly as Postfix would search its own tables with this key
  // (the key arrives as Postfix sends it to a socketmap: original case, external form).
  // Returns Found with a non-empty value, NotFound, or the first error from a source (which
  // stops the search). A source answering "" (a regexp rule without result text, or whose
  // substitutions expand to nothing) ends the search with a TEMPORARY error: Postfix's
  // maps_find() stops at that table too and fails the lookup with DICT_ERR_RETRY ("returns
  // an empty string result"), so the mail is deferred. Key forms per mode: address_search.h.
  // A key over kMaxLookupKeyBytes is a permanent error. Linear in the key (address_search.h).
  LookupResult lookup(std::string_view key) const;

  const std::string& name() const { return name_; }
  const TableOptions& options() const { return options_; }
  // The domain a bare localpart gets in the relay's local context (PostfixSettings::origin()).
  std::string_view origin() const { return postfix_ ? postfix_->origin() : std::string_view(); }
  const std::vector<std::unique_ptr<TableSource>>& sources() const { return sources_; }

 private:
  std::string name_;
  TableOptions options_;
  std::vector<std::unique_ptr<TableSource>> sources_;
  std::shared_ptr<const PostfixSettings> postfix_;
};

// ---- Source factories. Each reports problems into `diags` and returns nullptr on error. ----

struct TableEntry {
  std::string key;
  std::string value;
  SourceLocation where;
};

// An indexed in-memory source (YAML `entries:`). Keys are folded to lower case (foldTableKey:
// Unicode case folding when smtputf8); a duplicate key is an error reported at its location; an
// empty value is an error, and so is a key or value that is not UTF-8 when smtputf8.
std::unique_ptr<TableSource> makeEntriesSource(const std::vector<TableEntry>& entries,
                                               Diagnostics* diags, bool smtputf8 = true);

// regexp_table(5)/pcre_table(5) text. `origin` is where the text's first line is, so problems
// are reported as FILE:LINE:COL. allowSubstitution=false refuses $n (transport/relayhost tables).
std::unique_ptr<TableSource> makeRegexpSource(std::string_view text, const SourceLocation& origin,
                                              RegexpDialect dialect, bool allowSubstitution,
                                              Diagnostics* diags);

// A Postfix table source file named as in main.cf: "hash:/path", "texthash:/path",
// "regexp:/path", "pcre:/path". hash/texthash read the postmap SOURCE text (key value lines,
// # comments, continuation lines). `where` locates the YAML value for "cannot read" errors.
// smtputf8 as PostfixSettings::smtputf8Enable (hash/texthash key folding and UTF-8 screening).
std::unique_ptr<TableSource> loadTableFileSource(std::string_view spec, const SourceLocation& where,
                                                 bool allowSubstitution, Diagnostics* diags,
                                                 bool smtputf8 = true);

}  // namespace relaykit

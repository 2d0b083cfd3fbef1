// SPDX-License-Identifier: Apache-2.0
// address_list.h: RFC 5322 address-list parser for From/Sender/Reply-To/To/Cc header values.
//
// Understands display names (atoms, quoted-strings, encoded-words, obsolete dotted phrases),
// comments (nested), groups ("Team: a@x, b@y;"), angle addresses with obsolete routes, domain
// literals, 8-bit UTF-8 (RFC 6532), and folding (CRLF or LF followed by whitespace). Each mailbox
// records the byte range of its addr-spec in the input, so a rewrite splices new addresses in and
// keeps every other byte (display names, comments, folding) exactly as it was. A value that is not
// a valid address list yields an error Status and must be left untouched by callers. Input longer
// than kMaxAddressListBytes or with more than kMaxMailboxes mailboxes is refused.
//
// Where Postfix's own parser (tok822_parse) is lenient and still finds the address, so is this
// one: "a@b@domain" has the localpart "a@b" (the last '@' splits, as Postfix internalizes it).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace relaykit::milter {

inline constexpr size_t kMaxAddressListBytes = 64 * 1024;
inline constexpr size_t kMaxMailboxes = 1000;

struct Mailbox {
  std::string displayName;  // the phrase as written (raw, possibly quoted or encoded); may be empty
  std::string group;        // the enclosing group's phrase as written; empty outside a group
  std::string localPart;    // unquoted, comments and folding removed
  std::string domain;       // as written, comments removed, trailing dot dropped; empty if none
  size_t specBegin = 0;     // [specBegin, specEnd) is the addr-spec in the parsed text
  size_t specEnd = 0;
  size_t routeBegin = 0;  // where an obsolete source route "@a,@b:" starts; specBegin if none
  std::vector<std::string> comments;  // comments inside the addr-spec ("(c)"), in order
  bool angle = false;                 // written as <addr-spec>
  // Where the list separator before this mailbox is missing: the end of the previous address
  // when nothing separated the two ("a b", "\"\"x", "<a@x>b@y"); npos when a ',' or ';' did.
  // Postfix's parser splits there too, and writes ", " there when it rewrites the header.
  size_t missingSeparatorAt = std::string::npos;

  // The address in Postfix's external form, as a socketmap key: the localpart quoted only when it
  // must be ("john doe"@x), then @domain. Just the localpart when there is no domain.
  std::string address() const;
  // The display name as text: quotes removed, quoted-pairs resolved, encoded-words decoded.
  std::string displayText() const;
};

// Parses an address-list (or mailbox-list). Empty list elements (",,") are skipped; "<>" gives
// no mailbox. Errors: unterminated quoted-string, comment, domain literal or angle address;
// misplaced specials; too long; too many mailboxes.
StatusOr<std::vector<Mailbox>> parseAddressList(std::string_view text);

struct AddressReplacement {
  size_t specBegin = 0;
  size_t specEnd = 0;
  std::string address;  // new addr-spec text
};

// The text that replaces [routeBegin, specEnd) of `box` when its address becomes `address`:
// the new address, then each comment that was inside the addr-spec (" (c)"), as Postfix
// re-externalizes a rewritten address (tok822 moves comments behind it). The obsolete source
// route is dropped, as Postfix's rewriting does.
std::string replacementText(const Mailbox& box, std::string_view address);

// Replaces the given addr-spec ranges of `text` (non-overlapping, any order).
std::string spliceAddresses(std::string_view text, std::vector<AddressReplacement> replacements);

// A header rewritten as Postfix's header rewriting writes it: `text` (parsed into `boxes`) with
// the replacements spliced in and, when there is any replacement, ", " (or "," before
// whitespace) where a mailbox's list separator is missing, so adjacent addresses stay apart
// ("\"\"x" becomes "r0@x, r1@x", never "r0@xr1@x"). No replacement: `text` unchanged.
std::string rewriteAddressList(std::string_view text, const std::vector<Mailbox>& boxes,
                               std::vector<AddressReplacement> replacements);

}  // namespace relaykit::milter

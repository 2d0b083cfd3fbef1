// SPDX-License-Identifier: Apache-2.0
// address.h: RFC 5321/5322-ish mail address helpers with Postfix's exact semantics.
//
// Postfix keeps addresses in two forms: external (quoted, "john doe"@x, as in tables and on the
// wire) and internal (unquoted, john doe@x). These functions convert between them as
// quote_822_local(3)/unquote_822_local do, and split address extensions as split_addr(3) and
// strip_addr(3) do. They never fail: any byte string is accepted and mapped deterministically
// (malformed quoting is handled the way Postfix handles it).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/ascii.h"  // toLowerAscii, equalsIgnoreCase (used with addresses)

namespace relaykit {

// External -> internal form: removes quotes and backslash escapes from the localpart; text after
// the last unquoted '@' (the domain) is copied unchanged. A leading source route "@a,@b:" is kept.
std::string unquoteLocalpart(std::string_view external);

// Internal -> external form: quotes the localpart (everything before the last '@', or the whole
// string when bareLocalpart is true or there is no '@') unless it is an RFC 822 dot-string.
// 8-bit bytes are left alone (Postfix's QUOTE_FLAG_8BITCLEAN default); '"', '\' and CR inside a
// quoted string get a backslash. An empty localpart becomes "".
std::string quoteLocalpart(std::string_view internal, bool bareLocalpart = false);

// split_addr(3): the position of the delimiter that splits `localpart` into user and extension,
// or npos when it must not be split: postmaster, MAILER-DAEMON, double-bounce (any case);
// owner-foo and foo-request when '-' is one of the delimiters; no delimiter; an empty user.
size_t findExtensionDelimiter(std::string_view localpart, std::string_view delimiters);

// strip_addr(3) on an internal-form address (user+ext@domain, or a bare localpart).
struct StrippedAddress {
  std::string address;    // user@domain (or user when there was no '@')
  std::string extension;  // "+ext", including the delimiter that split it
};
// Returns nullopt when nothing was split (see findExtensionDelimiter).
std::optional<StrippedAddress> stripExtension(std::string_view internal,
                                              std::string_view delimiters);

// What cleanup(8) makes of an envelope address before canonical(5) sees it (`sender` as given in
// MAIL FROM, angle brackets removed): smtpd unquotes it (so a bare "a@b" is a@b, domain b), then
// trivial-rewrite's "local" context: a source route "@a,@b:" is dropped; an address without '@'
// becomes user@host for "host!user", user@host for "user%host", else user@myorigin (when myorigin
// is not empty); one trailing dot after the domain is dropped; the localpart is re-quoted as
// quote_822_local does.
std::string rewriteLocalContext(std::string_view sender, std::string_view myorigin);

}  // namespace relaykit

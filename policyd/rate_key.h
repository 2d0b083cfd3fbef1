// SPDX-License-Identifier: Apache-2.0
// rate_key.h: which principal a limit counts, and the store key that holds its state.
//
// A key spec is a list of parts: any Postfix policy attribute name (client_address, sender,
// sasl_username, ...), sender_domain, recipient_domain, or a client network written
// client_address/V4LEN or client_address/V4LEN/V6LEN (IPv6 defaults to /64). The principal is
// the parts' values (case-folded) joined; a limit applies to a request only when every part has a
// non-empty value. The store key carries a truncated SHA-256 of the principal inside one
// {hash tag}, never the raw address: "rl:{<32 hex>}:<limit name>".
//
// Values are normalised so one principal has one key: addresses (sender, recipient,
// original_recipient) lose their extension as Postfix's strip_addr(3) does with the limit's
// delimiter set (user+1@d and user+2@d are user@d); client addresses are parsed by
// common/ip_network (::ffff:192.0.2.1 is 192.0.2.1). The principal is unambiguous: parts are
// "name=value" joined by kPrincipalSeparator, and a separator byte inside a value is doubled, so
// no two different lists of values give the same principal (a separator is always followed by
// a part name, never by a second separator). Values without that byte encode as they always
// did: counters stored by earlier versions are still found.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "policyd/policy_codec.h"

namespace relaykit::policy {

struct KeyPart {
  enum class Kind { kAttribute, kSenderDomain, kRecipientDomain, kClientNetwork };
  Kind kind = Kind::kAttribute;
  std::string attribute;  // kAttribute: the attribute name
  int v4Prefix = 32;      // kClientNetwork
  int v6Prefix = 64;
  std::string text;  // as written in the config
  // Address attributes (isAddressAttribute): the recipient_delimiter set whose first match in
  // the localpart splits off the extension; empty: no folding. Set from the limit's config.
  std::string extensionDelimiters;
};

// Joins "name=value" parts of a principal; doubled inside values.
inline constexpr char kPrincipalSeparator = '\x1f';

// sender, recipient, original_recipient: values whose extension a limit folds.
bool isAddressAttribute(std::string_view attribute);

// Parses one part as written in `key:`; returns an error message for unknown forms.
StatusOr<KeyPart> parseKeyPart(std::string_view text);

// The value of one part for this request ("" when absent).
std::string keyPartValue(const KeyPart& part, const PolicyRequest& request);

// The principal: "part=value" joined by kPrincipalSeparator (doubled inside values); nullopt
// when a part has no value.
std::optional<std::string> principalOf(const std::vector<KeyPart>& parts,
                                       const PolicyRequest& request);

// "rl:{<first 32 hex digits of SHA-256(principal)>}:<limitName>".
std::string storeKeyFor(const std::string& principal, const std::string& limitName);

// The domain of an address (after the last '@'), lower-cased; "" when none.
std::string domainOf(std::string_view address);
std::string toLower(std::string_view s);

// The address masked to the prefix, as text ("10.1.2.0/24"); "" when not an IP address.
std::string maskAddress(std::string_view address, int v4Prefix, int v6Prefix);

}  // namespace relaykit::policy

// rate_key.h: which principal a limit counts, and the store key that holds its state.
//
// A key spec is a list of parts: any Postfix policy attribute name (client_address, sender,
// sasl_username, ...), sender_domain, recipient_domain, or a client network written
// client_address/V4LEN or client_address/V4LEN/V6LEN (IPv6 defaults to /64). The principal is
// the parts' values (case-folded) joined; a limit applies to a request only when every part has a
// non-empty value. The store key carries a truncated SHA-256 of the principal inside one
// {hash tag}, never the raw address: "rl:{<32 hex>}:<limit name>".
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
};

// Parses one part as written in `key:`; returns an error message for unknown forms.
StatusOr<KeyPart> parseKeyPart(std::string_view text);

// The value of one part for this request ("" when absent).
std::string keyPartValue(const KeyPart& part, const PolicyRequest& request);

// The principal: "part=value" joined by '\x1f'; nullopt when a part has no value.
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

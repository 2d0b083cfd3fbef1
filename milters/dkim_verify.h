// SPDX-License-Identifier: Apache-2.0
// dkim_verify.h: checking DKIM signatures against a key given directly (no DNS), for
// `relaykit dkim verify` and the unit tests. Not a full receiver-side verifier: no DNS lookups,
// no policy; it answers "does this signature match this message and this key". It parses the
// DKIM-Signature tag list (RFC 6376 section 3.5), re-canonicalizes the signed headers and the
// body (honouring l= if a foreign signature carries one), and checks bh= and b=. Pure; nothing
// throws; every failure is a VerifyResult with a reason.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "milters/dkim_key.h"
#include "milters/dkim_signer.h"

namespace relaykit::dkim {

struct ParsedSignature {
  std::map<std::string, std::string> tags;  // tag -> value, folding whitespace kept
  DkimAlgorithm algorithm = DkimAlgorithm::kRsaSha256;
  Canonicalization canon{Canon::kSimple, Canon::kSimple};  // RFC default when c= is absent
  std::string domain;
  std::string selector;
  std::vector<std::string> hList;
  std::string bodyHash;   // decoded bh=
  std::string signature;  // decoded b=
  bool hasLength = false;
  std::uint64_t length = 0;     // l=
  std::int64_t timestamp = -1;  // t=; -1 absent
  std::int64_t expiry = -1;     // x=; -1 absent
};

// Parses a DKIM-Signature value. Errors: a missing required tag, a bad value, v= not 1.
StatusOr<ParsedSignature> parseSignature(std::string_view value);

// `value` with the b= tag's value removed (the "b=" kept), as it is hashed.
std::string withEmptyB(std::string_view value);

struct VerifyResult {
  bool pass = false;
  std::string domain;
  std::string selector;
  std::string algorithm;
  std::string reason;  // "pass" or why not
};

// A key for (domain, selector, algorithm), or an error ("no key given for ...").
using KeyLookup = std::function<StatusOr<std::shared_ptr<const DkimKey>>(
    const std::string& domain, const std::string& selector, DkimAlgorithm algorithm)>;

// Checks every DKIM-Signature header of `headers` (top to bottom) over `body` (CRLF or LF line
// ends, see BodyCanonicalizer). `now` (seconds) is compared with x= when >= 0.
std::vector<VerifyResult> verifyMessage(const std::vector<DkimHeader>& headers,
                                        std::string_view body, const KeyLookup& lookup,
                                        std::int64_t now = -1);

}  // namespace relaykit::dkim

// SPDX-License-Identifier: Apache-2.0
// dkim_config.h: the `milter: dkim:` section compiled into an immutable DkimConfig, and the
// per-message decision "which keys sign this message".
//
// YAML (every key optional except keys:):
//   dkim:
//     sign: [authenticated, networks, non_smtpd]   # default; or `all`, or any subset
//     networks: [127.0.0.0/8, "::1", 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "fc00::/7"]
//     match: from              # from (the From header domain after rewriting) | sender
//     canonicalization: relaxed/relaxed   # HEADER/BODY, each simple or relaxed
//     headers: [From, ...]     # h= candidates; default dkim::defaultSignedHeaders()
//     oversign: [From]         # signed once more than present
//     expire: 7d               # adds x= = t= + this; default none
//     existing: keep           # keep | replace: a DKIM-Signature with our d= already there
//     keys:
//       - domain: corp.com     # "corp.com": that From domain; ".corp.com": its subdomains;
//                              # "*": any domain (then signing_domain is required)
//         signing_domain: corp.com   # d=; default the domain without its leading dot
//         selector: rsa2026
//         key_file: /etc/relaykit/dkim/corp.com.rsa.pem
//         algorithm: rsa-sha256      # optional; must match the key
// Lookup: the exact domain's entries, else those of the closest parent ".parent" entry, else
// "*"; every entry of the winning pattern signs (RSA and Ed25519 together give two signatures).
// Why sign: [authenticated, networks, non_smtpd] by default: a relay also receives mail it must
// not vouch for (an MX, a spoofed From from an outside client); signing only what its own users
// (SASL), its own networks (RFC 1918/4193 and loopback by default) and local submissions
// (sendmail) send keeps relaykit from signing forged mail. `sign: all` is for a relay that only
// ever receives mail from trusted hosts.
// Keys are loaded and checked while the configuration is parsed (dkim_key.h), so a reload with a
// bad key keeps the old configuration. Errors are reported at FILE:LINE:COL; key material is
// never part of a message.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/diagnostics.h"
#include "common/ip_network.h"
#include "common/yaml_util.h"
#include "milters/dkim_canon.h"
#include "milters/dkim_key.h"
#include "milters/dkim_signer.h"

namespace relaykit::dkim {

enum class MatchBy { kFromHeader, kEnvelopeSender };
enum class ExistingSignatures { kKeep, kReplace };

struct KeyEntry {
  std::string pattern;  // lower-case: "corp.com", ".corp.com" or "*"
  std::string domain;   // d=
  std::string selector;
  std::string keyFile;
  std::shared_ptr<const DkimKey> key;  // loaded and checked
  SourceLocation where;
};

// What the milter knows about the message's origin at end of message.
struct SignContext {
  std::optional<IpAddress> client;  // {client_addr}
  bool authenticated = false;       // {auth_authen} was set
  bool nonSmtpd = false;            // the non_smtpd_milters path (sendmail/pickup)
};

struct DkimConfig {
  bool signAll = false;
  bool signAuthenticated = true;
  bool signNetworks = true;
  bool signNonSmtpd = true;
  std::vector<IpNetwork> networks;  // default: loopback, RFC 1918, RFC 4193
  MatchBy matchBy = MatchBy::kFromHeader;
  Canonicalization canon;
  std::vector<std::string> headers;
  std::vector<std::string> oversign;
  std::int64_t expirySeconds = 0;
  ExistingSignatures existing = ExistingSignatures::kKeep;
  std::vector<KeyEntry> keys;

  // True when the `sign:` policy covers a message from `context`.
  bool selects(const SignContext& context) const;
  // The entries that sign for `domain` (lower-cased by the caller or not): exact, else closest
  // parent, else "*". Empty: no key.
  std::vector<const KeyEntry*> keysFor(std::string_view domain) const;
  // The body canonicalizations a MessageSigner needs (one).
  std::vector<Canon> bodyCanons() const { return {canon.body}; }
};

// Compiles `node` (the value of milter.dkim). Problems go to r's Diagnostics at FILE:LINE:COL;
// returns nullptr when there was any error in the section.
std::shared_ptr<const DkimConfig> parseDkimConfig(const YamlReader& r, const YAML::Node& node);

enum class PlanOutcome {
  kSign,         // specs hold one signature per key entry
  kNotSelected,  // the sign: policy does not cover this message
  kNoDomain,     // no usable From (none, several, several domains) or no sender domain
  kNoKey,        // no key entry for the domain (counted; the message passes unsigned)
};

const char* planOutcomeName(PlanOutcome outcome);

struct SignPlan {
  PlanOutcome outcome = PlanOutcome::kNoKey;
  std::string domain;                      // the domain looked up
  std::vector<SignatureSpec> specs;        // kSign: in key order
  std::vector<std::size_t> removeIndexes;  // existing: replace: DKIM-Signature headers (0-based
                                           // positions in `headers`) whose d= is signed again
};

// The decision for one message. `domain` is the From (or sender) domain the caller extracted;
// empty when there is none usable. `now` gives t=.
SignPlan planSignatures(const DkimConfig& config, const SignContext& context,
                        std::string_view domain, const std::vector<DkimHeader>& headers,
                        std::int64_t now);

}  // namespace relaykit::dkim

// SPDX-License-Identifier: Apache-2.0
// policy_config.h: the compiled, immutable configuration of relaykit-policyd.
//
// parsePolicyConfig() reads the raw `policy:` node kept by loadConfig() (common/config.h) with
// YamlReader, plus the already-parsed `redis:` section, validates everything (every problem is
// reported as FILE:LINE:COL into Diagnostics, not just the first) and returns a snapshot shared
// read-only as shared_ptr<const PolicyConfig>; a reload builds a new one and swaps it. Never
// throws. The common daemon keys (listen, user, metrics_listen, ...) are the skeleton's.
#pragma once

#include <re2/re2.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/diagnostics.h"
#include "common/ip_network.h"
#include "policyd/alert.h"
#include "policyd/allowance_table.h"
#include "policyd/gcra.h"
#include "policyd/policy_codec.h"
#include "policyd/rate_key.h"
#include "policyd/redis_store.h"

namespace relaykit::policy {

inline constexpr const char* kDefaultLimitReply =
    "450 4.7.1 Too much mail ($limit), please retry in $retry_after seconds";
inline constexpr const char* kStoreErrorReply =
    "DEFER_IF_PERMIT 4.3.0 Rate limit service unavailable, try again later";

// The keys Postfix's sender_dependent_relayhost_maps / check_sender_access search would try for
// a request's envelope sender, folded like an indexed table's keys: user+ext@domain,
// user@domain, (local domains) user+ext and user, @domain; "<>" for the null sender. Sender
// exemptions and relay rules written as an address or @domain match any of them, so
// "nagios@corp.local" covers "Nagios+disk@Corp.Local" as it would in Postfix's own tables.
std::vector<std::string> senderSearchKeys(std::string_view sender, const PostfixSettings& postfix);

// Who is never limited (global `exempt:` and per-limit `exempt:`).
struct Exemptions {
  std::vector<IpNetwork> clients;
  std::vector<std::string> senders;    // lower-cased; "user@domain" or "@domain"
  std::vector<std::string> saslUsers;  // lower-cased
  // senderKeys: senderSearchKeys() of the request's sender.
  bool matches(const PolicyRequest& request, const std::vector<std::string>& senderKeys) const;
};

enum class CountUnit { kMessages, kRecipients, kBytes };
const char* countUnitName(CountUnit unit);

// The extension delimiters a limit folds when neither it nor the `postfix:` section names any
// (see policyd/README.md, "Address extensions").
inline constexpr const char* kDefaultLimitDelimiter = "+";
inline constexpr std::size_t kMaxDelimiterSet = 16;
// Principal-specific allowances one limit may list.
inline constexpr std::size_t kMaxAllowances = 100000;

struct LimitRule {
  std::string name;
  // recipient_delimiter: the set of characters that split an address extension off the sender
  // and recipient parts of the key ("" keeps extensions).
  std::string recipientDelimiter;
  std::vector<KeyPart> key;
  CountUnit count = CountUnit::kMessages;
  std::vector<RateWindow> windows;  // the default allowance
  // `allowances:` entries and the `allowances_file:` (allowance_table.h); null when neither is
  // given.
  std::shared_ptr<const AllowanceTable> allowances;
  std::string reply = kDefaultLimitReply;
  bool warnOnly = false;
  bool alert = true;  // `alert: false`: no alert when this limit trips (policy.alerts)
  Exemptions exempt;
  bool usesRecipient() const;
  // The allowance that applies to this principal: its own (or its @domain's), or the default
  // (`windows`).
  const std::vector<RateWindow>& windowsFor(const std::string& principal) const;
  // The entry windowsFor() takes the windows of; nullptr for the default.
  const AllowanceTable::Entry* allowanceFor(const std::string& principal) const;
};

struct RelayRule {
  enum class SenderKind { kKey, kRegexp };
  SenderKind senderKind = SenderKind::kKey;
  // kKey: the address or "@domain", folded as senderSearchKeys() folds ("<>" = null sender);
  // kRegexp: the pattern.
  std::string sender;
  std::shared_ptr<const RE2> regexp;
  std::vector<IpNetwork> clients;             // empty: any client
  std::vector<std::string> saslUsers;         // empty: any (or none)
  std::vector<std::string> recipientDomains;  // empty: any
  std::string filter;                         // transport:nexthop
};

// Bounds of one window (`max`, `per`): far beyond any real limit, small enough that every GCRA
// product (cost x period, cost <= max) is exact enough in a double and no TAT nears INT64_MAX.
inline constexpr std::int64_t kMaxWindowMax = 1000000000000000;               // 10^15 units
inline constexpr std::int64_t kMaxWindowPeriodMs = 366LL * 24 * 3600 * 1000;  // 366 days

// sockaddr_un holds 108 bytes with the terminating NUL.
inline constexpr std::size_t kMaxAdminSocketPath = 107;

struct PolicyConfig {
  std::string file;
  // policy.admin_socket: where `relaykit limits` reaches the memory store (empty: nowhere).
  std::string adminSocket;
  bool useRedis = false;
  bool failOpen = true;  // on_store_error: open
  Exemptions exempt;
  std::vector<LimitRule> limits;
  std::vector<RelayRule> relay;
  AlertSettings alerts;  // policy.alerts (alerts.enabled: the section exists)
  RedisStoreSettings redis;
  // The `postfix:` section (recipient_delimiter, local domains) for sender matching.
  std::shared_ptr<const PostfixSettings> postfix = std::make_shared<const PostfixSettings>();
  // True when an exemption or relay rule matches senders by address or @domain (senderKeys).
  bool matchesSenderKeys = false;
  // True when some limit or relay rule needs the recipients of a message at END-OF-MESSAGE.
  bool tracksRecipients = false;
};

// Builds the policy snapshot from a loaded Config. Returns nullptr when any error was reported
// into `diags` (warnings do not fail). Reads redis.password_file (an unreadable file is an error
// when store is redis).
std::shared_ptr<const PolicyConfig> parsePolicyConfig(const Config& config, Diagnostics* diags);

// loadConfig + parsePolicyConfig (the CLI and tests).
std::shared_ptr<const PolicyConfig> loadPolicyConfigFile(const std::string& path,
                                                         Diagnostics* diags);

}  // namespace relaykit::policy

namespace relaykit {
// The `relaykit check` hook for the `policy:` section (cli/section_validators.h): parses it and
// reports every problem; no network.
void validatePolicySection(const Config& config, Diagnostics* diags);
}  // namespace relaykit

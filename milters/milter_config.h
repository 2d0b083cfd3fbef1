// SPDX-License-Identifier: Apache-2.0
// milter_config.h: the `milter:` YAML section compiled into an immutable snapshot.
//
// parseMilterConfig() reads Config::milterNode with YamlReader, compiles header_checks (Postfix
// text, through common/regexp_table.h) and header_rules (RE2), resolves rewrite_from /
// rewrite_sender table names against Config::tables, and reports EVERY problem into Diagnostics
// as FILE:LINE:COL. It returns nullptr when there is any error; the snapshot keeps the Config
// (and so its tables) alive. Keys (the documented ones, plus the extensions marked +):
//   listen, socket_mode, socket_owner, user, metrics_listen   (common daemon keys, config.h)
//   on_error: tempfail | accept
//   header_checks: |  regexp_table(5) text whose results are actions
//   header_checks_file: [regexp:|pcre:]PATH           (+) the same text from a file
//   header_rules: [ {match, action: remove|replace|prepend|warn|info|dunno, with,
//                    decode (+), when: {sender, recipient (+ any/all), client, authenticated,
//                    sasl_user (+), helo (+), client_name (+), not (+)}} ]
//   rewrite_from: {table, headers: [From, ...]}
//   rewrite_sender: {table}
//   dkim: {sign, networks, match, canonicalization, headers, oversign, expire, existing,
//          keys: [{domain, signing_domain, selector, key_file, algorithm}]} (milters/dkim_config.h)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/diagnostics.h"
#include "common/table.h"
#include "milters/address_memo.h"
#include "milters/dkim_config.h"
#include "milters/header_rules.h"

namespace relaykit::milter {

inline constexpr int kDefaultMilterSessions = 1024;
inline constexpr int kMaxMilterSessionsLimit = 65536;

enum class OnError { kTempfail, kAccept };

struct MilterConfig {
  std::shared_ptr<const Config> base;  // tables, postfix settings, daemon keys
  DaemonSettings daemon;
  OnError onError = OnError::kTempfail;
  // milter.max_sessions: Postfix sessions served at once (slots of the event loop, see
  // milter_service.h); more wait their turn. Read at start-up only (a change needs a restart).
  int maxSessions = kDefaultMilterSessions;
  std::shared_ptr<const HeaderRuleSet> rules;  // never null (may be empty)
  std::shared_ptr<const Table> fromTable;      // rewrite_from; null when off
  std::vector<std::string> fromHeaders;        // default: From
  std::shared_ptr<const Table> senderTable;    // rewrite_sender; null when off
  // The answers of fromTable and senderTable mappings so far, by address and (rewrite_from) by
  // whole header value (address_memo.h); null: none kept.
  std::shared_ptr<AddressMemo> fromMemo;
  std::shared_ptr<HeaderRewriteMemo> fromHeaderMemo;
  std::shared_ptr<AddressMemo> senderMemo;
  std::shared_ptr<const dkim::DkimConfig> dkim;  // milter.dkim; null when signing is off

  // Protocol steps this configuration needs (negotiation asks only for these).
  bool needsRecipients() const;
  bool needsHelo() const;
  bool needsHeaders() const;
  // The body step (DKIM signing hashes it).
  bool needsBody() const;
  bool needsConnect() const;  // client address or name
};

// Compiles the milter section of `config`. Returns nullptr after reporting errors into diags.
std::shared_ptr<const MilterConfig> parseMilterConfig(std::shared_ptr<const Config> config,
                                                      Diagnostics* diags);
// Convenience overload for callers holding a plain reference (the Config is copied).
std::shared_ptr<const MilterConfig> parseMilterConfig(const Config& config, Diagnostics* diags);

}  // namespace relaykit::milter

namespace relaykit {
// The `relaykit check` hook (cli/section_validators.h): parseMilterConfig, problems into diags.
void validateMilterSection(const Config& config, Diagnostics* diags);
}  // namespace relaykit

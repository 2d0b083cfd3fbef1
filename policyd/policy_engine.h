// SPDX-License-Identifier: Apache-2.0
// policy_engine.h: the decisions of relaykit-policyd as pure functions (no I/O, no clock).
//
// Stage semantics (documented in policyd/README.md):
//  - RCPT: every applicable limit is CHECKED with this message's minimal cost (1 message, 1
//    recipient, the MAIL FROM SIZE= bytes) and nothing is charged; a limit that would be exceeded
//    refuses the recipient early (4xx from `reply`).
//  - END-OF-MESSAGE: every applicable limit is checked and CHARGED together, all or nothing, with
//    the real cost (1 message, recipient_count recipients, size bytes); refused mail is not
//    counted.
//  - DATA: checked like END-OF-MESSAGE but not charged. Other stages: no limits.
//  - FILTER: relay rules answer at RCPT and at END-OF-MESSAGE (Postfix honours both; the last
//    FILTER wins). A refusal wins over FILTER; exemptions do not affect FILTER.
// planRequest() says what to ask the store; decide() turns the store's answer into the action;
// decideOnStoreError() applies on_store_error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "policyd/policy_codec.h"
#include "policyd/policy_config.h"
#include "policyd/rate_store.h"

namespace relaykit::policy {

// Bounds of the numeric attributes the engine reads (decimal digits only, empty = absent).
// Postfix never sends more (its sizes are off_t, its recipient counts bounded by
// smtpd_recipient_limit); a request beyond them is malformed (checkRequest).
inline constexpr std::int64_t kMaxSizeAttribute = std::int64_t{1} << 50;  // 1 PiB
inline constexpr std::int64_t kMaxRecipientCountAttribute = 10000000;
// Digits of a numeric attribute (leading zeros included): no bounded value needs more.
inline constexpr std::size_t kMaxNumberDigits = 20;

// Checks the numeric attributes the engine uses (`size`, `recipient_count`): empty, or decimal
// digits within their bounds. An error means the request is malformed: the service closes the
// connection without a reply, as for any other malformed input.
Status checkRequest(const PolicyRequest& request);

enum class Stage { kRcpt, kData, kEndOfMessage, kOther };
Stage stageOf(const PolicyRequest& request);

struct Plan {
  Stage stage = Stage::kOther;
  bool exempt = false;                  // globally exempt: no limits asked
  std::string filter;                   // "FILTER transport:nexthop" or empty
  StoreRequest store;                   // empty charges: no store round trip needed
  std::vector<const LimitRule*> rules;  // the limit of each charge (same order)
  std::vector<std::string> principals;  // for logs: the principal of each charge
};

// `acceptedRecipients`: at END-OF-MESSAGE, the recipients this server accepted at RCPT for the
// same `instance` (may be null); used for recipient / recipient_domain keys when the request has
// no `recipient` attribute (Postfix sends it only for single-recipient mail).
Plan planRequest(const PolicyConfig& config, const PolicyRequest& request,
                 const std::vector<std::string>* acceptedRecipients = nullptr);

struct LimitHit {
  std::string limit;
  bool warnOnly = false;
  std::size_t charge = 0;  // its index in plan.store.charges (and plan.rules, plan.principals)
  std::int64_t retryAfterSeconds = 0;
};

struct Verdict {
  std::string action;  // the policy reply's action
  bool refused = false;
  bool storeError = false;        // the store could not answer (on_store_error applied)
  std::vector<std::string> logs;  // one line per refusal, warn-only refusal or store error
  std::vector<LimitHit> hits;     // every limit exceeded (metrics, alerts)
};

Verdict decide(const PolicyConfig& config, const PolicyRequest& request, const Plan& plan,
               const StoreResult& result);
Verdict decideOnStoreError(const PolicyConfig& config, const Plan& plan, const Status& error);

// Expands $attribute / ${attribute} from the request, plus $limit and $retry_after (seconds);
// unknown names expand to nothing, "$$" is '$'. Expanded values are cut to 100 characters and
// stripped of control characters. A retry hint is appended when the text has no $retry_after.
std::string expandReply(const std::string& text, const PolicyRequest& request,
                        const std::string& limitName, std::int64_t retryAfterSeconds);

}  // namespace relaykit::policy

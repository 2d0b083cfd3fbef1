// SPDX-License-Identifier: Apache-2.0
// dkim_message.h: DKIM signing of one message as relaykit-milter would do it, on the milter's
// types (Envelope, HeaderField): which domain the signing table is asked for, and the whole
// decide-and-sign step for a message held in memory (`relaykit rewrite`). The live milter uses
// the same pieces with the body streamed: create a dkim::MessageSigner(config.dkim->bodyCanons())
// for the message, feedBody() every body chunk, and at end of message, on the FINAL headers
// (RewriteOutcome::headers), call dkimLookupDomain(), dkim::planSignatures(), remove the
// plan's removeIndexes, and MessageSigner::sign() (contract in dkim_signer.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "milters/dkim_config.h"
#include "milters/header_rules.h"

namespace relaykit::milter {

// The domain to look up: with match: from, the domain of the single From header's mailboxes
// (lower-case; "" when there is no From, more than one From header, an unparsable From, or
// mailboxes of different domains: such mail passes unsigned); with match: sender, the envelope
// sender's domain ("" for the null sender).
std::string dkimLookupDomain(const dkim::DkimConfig& config,
                             const std::vector<HeaderField>& headers,
                             const std::string& envelopeSender);

// The SignContext of a message: client address, SASL login, and whether it came through
// non_smtpd_milters (the caller knows; see docs/dkim.md).
dkim::SignContext dkimContext(const Envelope& envelope, bool nonSmtpd);

struct DkimResult {
  dkim::PlanOutcome outcome = dkim::PlanOutcome::kNotSelected;
  std::string domain;
  std::vector<std::string> signatures;  // DKIM-Signature values, in key order
  std::vector<std::size_t> removed;     // indexes of replaced DKIM-Signature headers
  std::string error;                    // signing failed (OpenSSL); nothing added
};

// Decides and signs a message held whole: `headers` final (as delivered), `body` with LF or
// CRLF line ends. `now` is t=.
DkimResult signWholeMessage(const dkim::DkimConfig& config, const dkim::SignContext& context,
                            const std::string& envelopeSender,
                            const std::vector<HeaderField>& headers, const std::string& body,
                            std::int64_t now);

}  // namespace relaykit::milter

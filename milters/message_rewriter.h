// SPDX-License-Identifier: Apache-2.0
// message_rewriter.h: the whole rewrite of one message, from envelope and headers to an edit plan.
//
// rewriteMessage() applies, in this order: header rules (header_checks, then header_rules; first
// match per header), rewrite_from on the resulting headers (address-aware: display names, comments
// and folding kept byte for byte, only addr-specs replaced), rewrite_sender on the envelope sender
// (canonical(5) semantics: repeated up to kMaxCanonicalRounds while the answer changes; the null
// sender is never touched; ESMTP arguments are passed on). It returns the operations to apply at
// end of message, a human summary of each change for the log line, and WARN/INFO/problem notes.
// A header that is not a valid address list is left untouched and noted. A table error stops the
// rewrite and is returned as `error` (the caller applies on_error); nothing is half-applied.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "milters/edit_plan.h"
#include "milters/header_rules.h"
#include "milters/milter_config.h"

namespace relaykit::milter {

// canonical(5): Postfix re-applies canonical mapping while the result changes, at most this often.
inline constexpr int kMaxCanonicalRounds = 10;

struct RewriteOutcome {
  EditPlan plan;                     // in application order; empty: nothing to change
  std::vector<std::string> changes;  // "from=<a> -> <b>", "header X-Originating-IP removed", ...
  std::vector<std::string> notes;    // WARN/INFO texts and problems (unparsable header, ...)
  std::vector<HeaderField> headers;  // the headers as they will be after the plan (wantHeaders)
  bool error = false;                // a table lookup failed: apply on_error, change nothing
  std::string errorReason;

  // Back to the state of RewriteOutcome{}, keeping the storage of its vectors.
  void clear();
};

// What rewriteMessage() builds and drops again for every message, kept by a caller that rewrites
// one message after another (relaykit-milter: one per connection) so its storage is reused.
struct RewriteScratch {
  std::vector<HeaderSlot> slots;
};

// `wantHeaders` false leaves RewriteOutcome::headers empty (a caller that does not look at the
// resulting headers saves copying them). `headers` is taken over (a caller done with them moves
// them in and saves a copy).
RewriteOutcome rewriteMessage(const MilterConfig& config, const Envelope& envelope,
                              std::vector<HeaderField> headers, bool wantHeaders = true);
// The same into `*out` (cleared first): the elements of `*headers` are taken (moved from; the
// vector keeps its storage), and `out`'s vectors and `scratch` keep theirs for the next message.
void rewriteMessage(const MilterConfig& config, const Envelope& envelope,
                    std::vector<HeaderField>* headers, bool wantHeaders, RewriteScratch* scratch,
                    RewriteOutcome* out);

// Bounds of one message's header block: past either one relaykit-milter lets the message pass
// unchanged (logged), and `relaykit rewrite` does the same.
constexpr size_t kMaxMessageHeaders = 200000;
constexpr size_t kMaxMessageHeaderBytes = 16 * 1024 * 1024;

// True for a header Postfix's cleanup(8) drops (message_drop_headers' default: Bcc,
// Content-Length, Resent-Bcc, Return-Path), compared as header_opts_find() does.
bool isDroppedHeader(std::string_view name);

// The Postfix-style log line for a changed message: "QID: change, change", or "" when unchanged.
std::string formatRewriteLog(const std::string& queueId, const std::vector<std::string>& changes);
// The same into `line` (cleared first; its storage reused by a caller that logs every message).
void formatRewriteLog(const std::string& queueId, const std::vector<std::string>& changes,
                      std::string* line);

}  // namespace relaykit::milter

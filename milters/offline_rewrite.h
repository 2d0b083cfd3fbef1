// SPDX-License-Identifier: Apache-2.0
// offline_rewrite.h: the milter's engine on a message file, for `relaykit rewrite`.
//
// splitMessage() reads a message file the way Postfix takes in the same file through sendmail(1)
// and cleanup(8) (Postfix 3.7 defaults; checked against Postfix by
// tests/e2e/explore_rewrite_offline.py): LF or CRLF line ends (trailing CRs dropped, any other CR
// a space, as Postfix stores it), a leading mbox "From " line skipped, a missing final newline
// supplied, "Name : value" stored as "Name: value", each header cut at its first NUL byte and at
// header_size_limit, the headers ending at the first line that is neither a header nor a
// continuation. Headers come out as the milter gets them from Postfix (value keeps the space
// after the colon, continuation lines joined with "\n"). rewriteOffline() drops the headers
// cleanup drops before any milter (message_drop_headers), runs rewriteMessage() on the rest and
// applies its plan the way Postfix would; the report gives the new message, a unified-style diff
// of the header block and the log line. With `milter: dkim:` configured the rewritten message is
// then signed as relaykit-milter would sign it (dkim_message.h): the DKIM-Signature headers are
// prepended to the message and shown in the diff. Pure: no I/O, no clock (the caller gives t=);
// nothing fails: every input is a message (a signing failure is reported in dkimNote).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "milters/header_rules.h"
#include "milters/message_rewriter.h"
#include "milters/milter_config.h"

namespace relaykit::milter {

// Postfix 3.7 defaults the intake reproduces.
constexpr size_t kLineLengthLimit = 2048;    // line_length_limit: longer lines come in pieces
constexpr size_t kHeaderSizeLimit = 102400;  // header_size_limit: cleanup drops text past it
// Work bound of diffHeaders()'s longest common subsequence (cells of its table).
constexpr size_t kMaxDiffCells = 4 * 1024 * 1024;
// Work bound (edit operations x headers) for applying the plan with Postfix's index semantics
// (applyEditPlan, quadratic); past it the engine's own final header list is used, the same
// result by construction (edit_plan_test.cc).
constexpr size_t kMaxPlanSimulation = 32 * 1024 * 1024;

struct ParsedMessage {
  std::vector<HeaderField> headers;
  std::string body;        // after the empty line, LF line ends, every line LF-terminated
  bool separator = false;  // an empty line (or a body) follows the headers; false for a file
                           // that is only a header block (Postfix writes no empty line then)
  std::vector<std::string> notes;  // what Postfix's intake changed ("header X cut at ...")
};

ParsedMessage splitMessage(std::string_view text);

// Headers ("Name:value" with folding), the empty line unless `separator` is false, and the body
// as message text, LF line ends.
std::string renderMessage(const std::vector<HeaderField>& headers, const std::string& body,
                          bool separator = true);

// Line diff of two header lists: " kept", "-removed", "+added" lines (one per header, folded
// lines indented under it). Minimal (longest common subsequence) up to kMaxDiffCells of work;
// past that, the stretch between the common first and last headers is shown removed then added.
std::string diffHeaders(const std::vector<HeaderField>& before,
                        const std::vector<HeaderField>& after);

// How the message reached Postfix, and the time, for DKIM signing (dkim_config.h: sign:).
struct OfflineSigning {
  bool nonSmtpd = false;  // the non_smtpd_milters path (sendmail)
  std::int64_t now = 0;   // t= of the signatures
};

struct OfflineReport {
  RewriteOutcome outcome;
  std::string message;    // the rewritten message
  std::string diff;       // diffHeaders(before, after) plus the envelope sender change
  std::string logLine;    // as relaykit-milter would log it ("" when unchanged)
  std::string newSender;  // the envelope sender after rewriting
  std::vector<std::string> dkimSignatures;  // DKIM-Signature values added (prepended)
  std::string dkimNote;  // "dkim: signed for corp.com (2 signatures)", "dkim: no_key ...", ""
};

OfflineReport rewriteOffline(const MilterConfig& config, const Envelope& envelope,
                             std::string_view message, const OfflineSigning& signing = {});

}  // namespace relaykit::milter

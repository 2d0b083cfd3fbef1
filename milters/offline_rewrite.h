// offline_rewrite.h: the milter's engine on a message file, for `relaykit rewrite`.
//
// splitMessage() reads an RFC 5322 message (CRLF or LF) into headers as the milter would get them
// from Postfix (value keeps the space after the colon, continuation lines joined with "\n") and
// the body; rewriteOffline() runs rewriteMessage() and applies its plan the way Postfix would;
// the report gives the new message, a unified-style diff of the header block and the log line.
// Pure: no I/O. A header block that does not parse (a line that is neither a header nor a
// continuation) ends the headers there, as Postfix's cleanup does; nothing fails.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "milters/header_rules.h"
#include "milters/message_rewriter.h"
#include "milters/milter_config.h"

namespace relaykit::milter {

struct ParsedMessage {
  std::vector<HeaderField> headers;
  std::string body;  // after the empty line, LF line ends
};

ParsedMessage splitMessage(std::string_view text);

// Headers ("Name:value" with folding) and body as message text, LF line ends.
std::string renderMessage(const std::vector<HeaderField>& headers, const std::string& body);

// Line diff of two header lists: " kept", "-removed", "+added" lines (one per header, folded
// lines indented under it).
std::string diffHeaders(const std::vector<HeaderField>& before,
                        const std::vector<HeaderField>& after);

struct OfflineReport {
  RewriteOutcome outcome;
  std::string message;    // the rewritten message
  std::string diff;       // diffHeaders(before, after) plus the envelope sender change
  std::string logLine;    // as relaykit-milter would log it ("" when unchanged)
  std::string newSender;  // the envelope sender after rewriting
};

OfflineReport rewriteOffline(const MilterConfig& config, const Envelope& envelope,
                             std::string_view message);

}  // namespace relaykit::milter

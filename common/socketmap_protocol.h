// SPDX-License-Identifier: Apache-2.0
// socketmap_protocol.h: Postfix socketmap_table(5) requests and replies (the netstring payloads),
// and the one place a table's tri-state answer becomes a socketmap reply.
//
// Request payload: "<name> <key>", split at the FIRST space (keys may contain spaces and may be
// empty). Reply payload: "OK <value>" (never with an empty value), "NOTFOUND ", "TEMP <reason>",
// "PERM <reason>". Replies longer than Postfix accepts (kMaxSocketmapReplyBytes) become PERM.
// Pure functions: no I/O, no logging (callers log from the answer's flags).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/config.h"
#include "common/lookup_result.h"
#include "common/status.h"

namespace relaykit {

// Postfix's socketmap_max_reply_size: it refuses longer replies.
inline constexpr std::size_t kMaxSocketmapReplyBytes = 100000;
// Largest request we accept (Postfix 3.12+ sends at most 10000 bytes).
inline constexpr std::size_t kMaxSocketmapRequestBytes = 100000;

struct SocketmapRequest {
  std::string_view name;
  std::string_view key;
};

// Splits at the first space. Error (malformed request) when there is no space or no name.
StatusOr<SocketmapRequest> parseSocketmapRequest(std::string_view payload);

struct SocketmapAnswer {
  std::string reply;  // the payload to send (netstring-encode it)
  LookupResult::Kind kind = LookupResult::Kind::kNotFound;  // what was answered
  bool unknownMap = false;                                  // PERM because no table has that name
  bool replyTooLarge = false;  // PERM because the value exceeded kMaxSocketmapReplyBytes
  bool emptyValue = false;     // PERM because a source returned an empty value (a bug)
  std::string detail;          // the error reason, for logs
};

// Formats a table's answer as a reply payload (see above).
SocketmapAnswer formatSocketmapReply(const LookupResult& result);
// Looks `key` up in table `name` of `config` and formats the reply; an unknown map is
// "PERM unknown map NAME".
SocketmapAnswer answerSocketmap(const Config& config, std::string_view name, std::string_view key);

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// socketmap_protocol.cc: socketmap request parsing and reply formatting; see the header.
#include "common/socketmap_protocol.h"

namespace relaykit {

namespace {

// Used when a source reports an error without saying why.
constexpr char kDefaultErrorReason[] = "lookup failed";

std::string withReason(const char* status, const std::string& reason) {
  return std::string(status) + " " + (reason.empty() ? kDefaultErrorReason : reason);
}

}  // namespace

StatusOr<SocketmapRequest> parseSocketmapRequest(std::string_view payload) {
  auto space = payload.find(' ');
  if (space == std::string_view::npos) {
    return Status::error("malformed socketmap request: no space between name and key");
  }
  if (space == 0) {
    return Status::error("malformed socketmap request: empty map name");
  }
  return SocketmapRequest{payload.substr(0, space), payload.substr(space + 1)};
}

SocketmapAnswer formatSocketmapReply(const LookupResult& result) {
  SocketmapAnswer answer;
  answer.kind = result.kind();
  switch (result.kind()) {
    case LookupResult::Kind::kFound:
      if (result.value().empty()) {
        // Postfix treats an empty OK as a configuration error: never send one.
        answer.kind = LookupResult::Kind::kPermError;
        answer.emptyValue = true;
        answer.detail = "empty value";
        answer.reply = "PERM empty lookup result";
        return answer;
      }
      answer.reply = "OK " + result.value();
      break;
    case LookupResult::Kind::kNotFound:
      answer.reply = "NOTFOUND ";
      break;
    case LookupResult::Kind::kTempError:
      answer.detail = result.reason();
      answer.reply = withReason("TEMP", result.reason());
      break;
    case LookupResult::Kind::kPermError:
      answer.detail = result.reason();
      answer.reply = withReason("PERM", result.reason());
      break;
  }
  if (answer.reply.size() > kMaxSocketmapReplyBytes) {
    answer.kind = LookupResult::Kind::kPermError;
    answer.replyTooLarge = true;
    answer.detail = "reply of " + std::to_string(answer.reply.size()) + " bytes exceeds " +
                    std::to_string(kMaxSocketmapReplyBytes);
    answer.reply = "PERM reply too large";
  }
  return answer;
}

SocketmapAnswer answerSocketmap(const Config& config, std::string_view name, std::string_view key) {
  const Table* table = config.findTable(name);
  if (table == nullptr) {
    SocketmapAnswer answer;
    answer.kind = LookupResult::Kind::kPermError;
    answer.unknownMap = true;
    answer.detail = "unknown map " + std::string(name);
    answer.reply = "PERM unknown map " + std::string(name);
    if (answer.reply.size() > kMaxSocketmapReplyBytes) {
      answer.reply = "PERM unknown map";
    }
    return answer;
  }
  return formatSocketmapReply(table->lookup(key));
}

}  // namespace relaykit

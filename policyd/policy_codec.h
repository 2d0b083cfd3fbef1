// SPDX-License-Identifier: Apache-2.0
// policy_codec.h: the Postfix policy delegation wire format (SMTPD_POLICY_README).
//
// A request is `name=value` lines ended by an empty line; a reply is one `action=...` line and
// an empty line. PolicyCodec is an incremental state machine fed bytes as they arrive, in chunks
// of any size (one byte at a time works). It refuses oversize input with the named limits below
// and reports malformed input as a sticky error: the caller logs it and disconnects without a
// reply, as Postfix expects. No I/O. Linear: each byte is scanned once (64 at a time) and copied
// once, a run of whole lines at a time, into the request's own buffer; a finished request handed
// back with recycle() lends its buffers to a later one, so a steady stream of requests allocates
// nothing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace relaykit::policy {

// Postfix 3.7 sends ~30 attributes; newer releases add more. Unknown attributes are kept but
// ignored by the engine.
inline constexpr std::size_t kMaxAttributeCount = 128;
// One `name=value` line, newline excluded. Postfix bounds addresses and names far below this.
inline constexpr std::size_t kMaxLineLength = 4096;
// A whole request, every line and newline included.
inline constexpr std::size_t kMaxRequestBytes = 65536;

// The attributes policyd reads on every request: PolicyRequest indexes them as they are added,
// so looking one up does not scan the request. Any other name is found by a scan.
enum class Attribute : std::uint8_t {
  kProtocolState,
  kSender,
  kRecipient,
  kClientAddress,
  kSaslUsername,
  kInstance,
  kSize,
  kRecipientCount,
  kQueueId,
  kCount,  // not an attribute: the number of indexed ones
};
// The indexed attribute named `name`, or Attribute::kCount for any other name.
Attribute attributeOf(std::string_view name);

// One policy request: the attributes in arrival order, stored compactly (all names and values
// in one string, offsets beside it: two buffers per request, not two per attribute).
class PolicyRequest {
 public:
  void add(std::string_view name, std::string_view value);
  // The value of the last attribute with this name; empty when absent.
  std::string_view get(std::string_view name) const;
  std::string_view get(Attribute attribute) const {
    const std::uint32_t i = known_[static_cast<std::size_t>(attribute)];
    return i == 0 ? std::string_view() : value(i - 1);
  }
  bool has(std::string_view name) const;
  std::size_t size() const { return spans_.size(); }
  std::string_view name(std::size_t i) const {
    return std::string_view(text_.data() + spans_[i].name, spans_[i].nameLength);
  }
  std::string_view value(std::size_t i) const {
    return std::string_view(text_.data() + spans_[i].value, spans_[i].valueLength);
  }
  bool empty() const { return spans_.empty(); }
  // Empties the request and keeps its buffers.
  void clear() {
    text_.clear();
    spans_.clear();
    known_.fill(0);
  }

 private:
  friend class PolicyCodec;
  void reserveOnFirst();  // one allocation each for a whole request's spans and text
  struct Span {
    std::uint32_t name, nameLength, value, valueLength;
  };
  std::string text_;
  std::vector<Span> spans_;
  // known_[a]: 1 + the index of the last span named a, 0 when absent.
  std::array<std::uint32_t, static_cast<std::size_t>(Attribute::kCount)> known_{};
};

class PolicyCodec {
 public:
  // Consumes all of `data`, appending every request completed by it to `out`. Returns an error
  // (and stays in error: every later call returns it too) on a line without '=', an empty
  // attribute name, an empty request, or input beyond kMaxAttributeCount, kMaxLineLength or
  // kMaxRequestBytes. A trailing '\r' before '\n' is tolerated.
  Status feed(std::string_view data, std::vector<PolicyRequest>* out);
  // True when part of a request has been received but not yet its terminating empty line.
  bool midRequest() const { return requestBytes_ > 0; }
  // Hands back a request the caller is done with: its buffers serve a later request.
  void recycle(PolicyRequest&& done);

 private:
  enum class LineKind { kAttribute, kEnd, kError };
  Status fail(std::string message);
  // One line (newline excluded) whose first byte is at offset `at` of the request's text and
  // whose first '=' is at `eq` of the line (npos: none): an attribute added, the empty line
  // ending the request, or an error (error_ set).
  LineKind takeLine(std::size_t at, std::string_view line, std::size_t eq);
  // The error of a malformed line (an empty request, or no '=', an empty name, one too many).
  [[gnu::noinline, gnu::cold]] LineKind badLine(bool emptyRequest, std::size_t eq);
  // Hands the request being built to `out` and starts the next one in recycled buffers.
  void complete(std::vector<PolicyRequest>* out);

  PolicyRequest current_;
  PolicyRequest spare_;        // a recycled request's buffers, for the next one
  std::size_t lineStart_ = 0;  // offset in current_.text_ of the line being received
  std::size_t lineBytes_ = 0;  // bytes of that line received so far (newline excluded)
  std::size_t requestBytes_ = 0;
  Status error_;
};

// The reply for one request: "action=<action>\n\n", ready for a single write. Control characters
// in `action` are replaced by spaces so a reply can never be split or inject a second line.
std::string formatPolicyReply(std::string_view action);
// The same, replacing the contents of *out (whose buffer is reused).
void formatPolicyReply(std::string_view action, std::string* out);

}  // namespace relaykit::policy

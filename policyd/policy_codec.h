// SPDX-License-Identifier: Apache-2.0
// policy_codec.h: the Postfix policy delegation wire format (SMTPD_POLICY_README).
//
// A request is `name=value` lines ended by an empty line; a reply is one `action=...` line and
// an empty line. PolicyCodec is an incremental state machine fed bytes as they arrive, in chunks
// of any size (one byte at a time works). It refuses oversize input with the named limits below
// and reports malformed input as a sticky error: the caller logs it and disconnects without a
// reply, as Postfix expects. No I/O, no allocation beyond the request being built.
#pragma once

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

// One policy request: the attributes in arrival order, stored compactly (all names and values
// in one string, offsets beside it: two allocations per request, not two per attribute).
class PolicyRequest {
 public:
  void add(std::string_view name, std::string_view value);
  // The same for a whole `name=value` line whose '=' is at `eq`: one copy instead of two.
  void addLine(std::string_view line, std::size_t eq);
  // The value of the last attribute with this name; empty when absent.
  std::string_view get(std::string_view name) const;
  bool has(std::string_view name) const;
  std::size_t size() const { return spans_.size(); }
  std::string_view name(std::size_t i) const;
  std::string_view value(std::size_t i) const;
  bool empty() const { return spans_.empty(); }
  void clear() {
    text_.clear();
    spans_.clear();
  }

 private:
  void reserveOnFirst();  // one allocation each for a whole request's spans and text
  struct Span {
    std::uint32_t name, nameLength, value, valueLength;
  };
  std::string text_;
  std::vector<Span> spans_;
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

 private:
  Status fail(std::string message);
  Status endLine(std::string_view line);

  std::string line_;
  PolicyRequest current_;
  std::size_t requestBytes_ = 0;
  Status error_;
  std::vector<PolicyRequest>* out_ = nullptr;
};

// The reply for one request: "action=<action>\n\n", ready for a single write. Control characters
// in `action` are replaced by spaces so a reply can never be split or inject a second line.
std::string formatPolicyReply(std::string_view action);

}  // namespace relaykit::policy

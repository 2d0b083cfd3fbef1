// SPDX-License-Identifier: Apache-2.0
// policy_codec_fuzz.cc: the policy delegation codec (policyd/policy_codec.h) fed a byte stream.
// Input: [split byte] stream. Properties: feeding the stream in two pieces (at any point) gives
// the same requests and the same error as feeding it whole; every request is within the named
// limits; a reply is always exactly one action line and an empty line.
#include <string>
#include <vector>

#include "policyd/policy_codec.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using relaykit::policy::PolicyCodec;
using relaykit::policy::PolicyRequest;

std::string describe(const std::vector<PolicyRequest>& requests) {
  std::string out;
  for (const PolicyRequest& r : requests) {
    for (std::size_t i = 0; i < r.size(); ++i) {
      out.append(r.name(i)).append("=").append(r.value(i)).append("\n");
    }
    out += "\n";
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::size_t split = in.byte();
  std::string_view stream = in.rest();
  split = stream.empty() ? 0 : split % (stream.size() + 1);

  PolicyCodec whole;
  std::vector<PolicyRequest> a;
  relaykit::Status sa = whole.feed(stream, &a);

  PolicyCodec pieces;
  std::vector<PolicyRequest> b;
  relaykit::Status sb = pieces.feed(stream.substr(0, split), &b);
  if (sb) {
    sb = pieces.feed(stream.substr(split), &b);
  }
  FUZZ_CHECK(sa.isOk() == sb.isOk(), "split changes the outcome");
  FUZZ_CHECK(describe(a) == describe(b), "split changes the requests");
  for (const PolicyRequest& r : a) {
    FUZZ_CHECK(!r.empty() && r.size() <= relaykit::policy::kMaxAttributeCount, "attribute count");
    for (std::size_t i = 0; i < r.size(); ++i) {
      FUZZ_CHECK(!r.name(i).empty(), "empty attribute name");
      FUZZ_CHECK(r.name(i).size() + r.value(i).size() + 1 <= relaykit::policy::kMaxLineLength,
                 "line above the limit");
      FUZZ_CHECK(r.get(r.name(i)).data() != nullptr || r.value(i).empty(), "get");
    }
  }
  std::string reply = relaykit::policy::formatPolicyReply(stream.substr(0, 200));
  FUZZ_CHECK(reply.size() >= 9 && reply.compare(0, 7, "action=") == 0 &&
                 reply.compare(reply.size() - 2, 2, "\n\n") == 0 &&
                 reply.find('\n') == reply.size() - 2,
             "reply " + relaykit::fuzz::printable(reply));
  return 0;
}

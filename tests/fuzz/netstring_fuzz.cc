// SPDX-License-Identifier: Apache-2.0
// netstring_fuzz.cc: NetstringDecoder (common/netstring.h) fed a byte stream.
// Input: [chunk size byte][limit byte] stream. Properties: feeding the stream in chunks gives the
// same messages and the same final state as feeding it whole; every decoded message survives
// encode then decode; the whole stream, encoded, decodes back to itself.
#include <string>
#include <utility>
#include <vector>

#include "common/netstring.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using relaykit::NetstringDecoder;

struct Outcome {
  std::vector<std::string> messages;
  NetstringDecoder::State state = NetstringDecoder::State::kNeedMore;
  bool operator==(const Outcome& o) const { return messages == o.messages && state == o.state; }
};

Outcome decodeAll(std::string_view stream, std::size_t step, std::size_t limit) {
  NetstringDecoder decoder(limit);
  Outcome out;
  std::size_t pos = 0;
  while (pos < stream.size() && decoder.state() != NetstringDecoder::State::kError) {
    std::string_view piece = stream.substr(pos, step);
    std::size_t used = decoder.feed(piece);
    FUZZ_CHECK(used <= piece.size(), "consumed more than fed");
    pos += used;
    if (decoder.state() == NetstringDecoder::State::kMessage) {
      out.messages.push_back(decoder.takeMessage());
      FUZZ_CHECK(out.messages.back().size() <= limit, "message above the limit");
    } else if (decoder.state() == NetstringDecoder::State::kNeedMore) {
      FUZZ_CHECK(used == piece.size(), "kNeedMore left bytes unconsumed");
    }
  }
  out.state = decoder.state();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::size_t step = in.byte() % 17 + 1;
  std::uint8_t limitByte = in.byte();
  std::size_t limit = limitByte == 0 ? relaykit::kMaxNetstringBytes : limitByte;
  std::string_view stream = in.rest();

  Outcome whole = decodeAll(stream, stream.size() + 1, limit);
  Outcome chunked = decodeAll(stream, step, limit);
  FUZZ_CHECK(whole == chunked, "chunked decoding differs from whole");

  for (const std::string& m : whole.messages) {
    Outcome again = decodeAll(relaykit::encodeNetstring(m), step, limit);
    FUZZ_CHECK(again.messages.size() == 1 && again.messages[0] == m &&
                   again.state == NetstringDecoder::State::kNeedMore,
               "encode then decode of " + relaykit::fuzz::printable(m));
  }
  std::string encoded;
  relaykit::appendNetstring(stream, &encoded);
  Outcome self = decodeAll(encoded, step, stream.size());
  FUZZ_CHECK(self.messages.size() == 1 && self.messages[0] == stream,
             "the encoded stream does not decode to itself");
  return 0;
}

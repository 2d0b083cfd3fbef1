// SPDX-License-Identifier: Apache-2.0
// rfc2047_fuzz.cc: RFC 2047 encoded-words (milters/rfc2047.h). Input: [mode] text.
// Properties: decoding never fails; a display name encoded by encodePhrase, written before an
// address and parsed back (milters/address_list.h), has exactly that display text (encode then
// decode round trip), for any bytes.
#include <string>

#include "milters/address_list.h"
#include "milters/rfc2047.h"
#include "tests/fuzz/fuzz_support.h"

using relaykit::fuzz::printable;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::uint8_t mode = in.byte();
  std::string_view text = in.rest();
  if (mode & 1) {
    (void)relaykit::milter::decodeEncodedWords(text);
    (void)relaykit::milter::hasEncodedWords(text);
    (void)relaykit::milter::latin1ToUtf8(text);
    return 0;
  }
  std::string phrase = relaykit::milter::encodePhrase(text);
  std::string header = phrase + " <a@example.com>";
  auto boxes = relaykit::milter::parseAddressList(header);
  FUZZ_CHECK(boxes.isOk() && boxes->size() == 1,
             printable(text) + " encoded as " + printable(phrase) + " does not parse");
  std::string decoded = (*boxes)[0].displayText();
  FUZZ_CHECK(decoded == text, printable(text) + " encoded as " + printable(phrase) +
                                  " decodes to " + printable(decoded));
  return 0;
}

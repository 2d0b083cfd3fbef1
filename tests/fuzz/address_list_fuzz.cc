// SPDX-License-Identifier: Apache-2.0
// address_list_fuzz.cc: RFC 5322 address lists (milters/address_list.h), parsed and rewritten as
// rewrite_from does. Properties: every mailbox's addr-spec range lies inside the input; when
// every address is replaced by a distinct one (r<i>@example.com), the rewritten header parses
// again into exactly those addresses, in order (no two addresses glued into one, none lost).
#include <string>
#include <vector>

#include "milters/address_list.h"
#include "tests/fuzz/fuzz_support.h"

using relaykit::fuzz::printable;
using relaykit::milter::AddressReplacement;
using relaykit::milter::Mailbox;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto boxes = relaykit::milter::parseAddressList(text);
  if (!boxes) {
    return 0;
  }
  std::vector<AddressReplacement> replacements;
  std::vector<std::string> expected;
  size_t previousEnd = 0;
  for (const Mailbox& box : *boxes) {
    FUZZ_CHECK(box.routeBegin <= box.specBegin && box.specBegin < box.specEnd &&
                   box.specEnd <= text.size() && box.routeBegin >= previousEnd,
               "mailbox range in " + printable(text));
    previousEnd = box.specEnd;
    (void)box.address();
    (void)box.displayText();
    std::string address = "r" + std::to_string(expected.size()) + "@example.com";
    replacements.push_back({box.routeBegin, box.specEnd, replacementText(box, address)});
    expected.push_back(address);
  }
  std::string rewritten = relaykit::milter::rewriteAddressList(text, *boxes, replacements);
  if (rewritten.size() > relaykit::milter::kMaxAddressListBytes) {
    return 0;  // longer addresses than the input's (only with inputs far above -max_len=4096)
  }
  auto again = relaykit::milter::parseAddressList(rewritten);
  FUZZ_CHECK(again.isOk(), printable(text) + " rewritten as " + printable(rewritten) + ": " +
                               again.status().message());
  std::vector<std::string> got;
  for (const Mailbox& box : *again) {
    got.push_back(box.address());
  }
  FUZZ_CHECK(got == expected, printable(text) + " rewritten as " + printable(rewritten));
  return 0;
}

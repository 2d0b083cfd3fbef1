// SPDX-License-Identifier: Apache-2.0
// address_quote_fuzz.cc: Postfix's address forms (common/address.h). Input: [flags] text.
// Properties: unquoting a quoted localpart gives it back (quote_822_local / unquote_822_local
// round trip); quoting is idempotent on its own output's unquoted form; extension splitting and
// cleanup's local-context rewrite never fail and keep the localpart's bytes.
#include <string>

#include "common/address.h"
#include "tests/fuzz/fuzz_support.h"

using relaykit::fuzz::printable;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::uint8_t flags = in.byte();
  std::string_view delimiters = (flags & 1) ? std::string_view("+-") : std::string_view("+");
  std::string_view text = in.rest();

  std::string quoted = relaykit::quoteLocalpart(text, /*bareLocalpart=*/true);
  std::string back = relaykit::unquoteLocalpart(quoted);
  FUZZ_CHECK(back == text, printable(text) + " quoted as " + printable(quoted) + " unquotes to " +
                               printable(back));

  std::string internal = relaykit::unquoteLocalpart(text);
  std::string external = relaykit::quoteLocalpart(internal);
  FUZZ_CHECK(
      relaykit::unquoteLocalpart(external) == internal,
      printable(text) + ": internal " + printable(internal) + " external " + printable(external));

  if (auto stripped = relaykit::stripExtension(internal, delimiters)) {
    FUZZ_CHECK(!stripped->extension.empty() &&
                   delimiters.find(stripped->extension[0]) != std::string_view::npos,
               "extension " + printable(stripped->extension));
    FUZZ_CHECK(stripped->address.size() + stripped->extension.size() == internal.size(),
               "strip lost bytes of " + printable(internal));
  }
  (void)relaykit::rewriteLocalContext(text, (flags & 2) ? "relay.corp.local" : "");
  (void)relaykit::toLowerAscii(text);
  return 0;
}

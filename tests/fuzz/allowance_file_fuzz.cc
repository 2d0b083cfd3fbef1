// SPDX-License-Identifier: Apache-2.0
// allowance_file_fuzz.cc: allowance values and allowances files (policyd/allowance_table.h) over
// texthash source text (common/table_file.h forEachPostmapEntry), for a one-part address key and
// a composite key with a network part.
// Input: flags byte, one allowance value NUL, postmap source text. Properties: a value that
// parses has 1 to 16 windows, each within the `max`/`per` bounds, no two of one period; every
// entry the table accepted is found again by its own principal, with the windows its value
// parsed to; a request principal searched finds either nothing or an entry of the table.
#include <string>
#include <vector>

#include "common/table_file.h"
#include "policyd/allowance_table.h"
#include "policyd/policy_config.h"
#include "tests/fuzz/fuzz_support.h"

using namespace relaykit::policy;
using relaykit::fuzz::printable;

namespace {

void checkWindows(const std::vector<RateWindow>& windows, std::string_view value) {
  FUZZ_CHECK(!windows.empty() && windows.size() <= kMaxAllowanceWindows,
             "window count of " + printable(value));
  for (std::size_t i = 0; i < windows.size(); ++i) {
    FUZZ_CHECK(windows[i].max >= 1 && windows[i].max <= kMaxWindowMax, "max " + printable(value));
    FUZZ_CHECK(windows[i].periodUs > 0 && windows[i].periodUs <= kMaxWindowPeriodMs * 1000,
               "period " + printable(value));
    for (std::size_t j = 0; j < i; ++j) {
      FUZZ_CHECK(windows[i].periodUs != windows[j].periodUs, "periods of " + printable(value));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  const std::uint8_t flags = in.byte();
  const std::string_view value = in.text();
  if (auto windows = parseAllowanceValue(value); windows.isOk()) {
    checkWindows(*windows, value);
  }
  const std::string_view text = in.rest();

  std::vector<KeyPart> key;
  if (flags & 1) {
    key = {*parseKeyPart("sasl_username"), *parseKeyPart("client_address/24/48"),
           *parseKeyPart("recipient")};
  } else {
    key = {*parseKeyPart("sender")};
  }
  for (KeyPart& part : key) {
    if (isAddressAttribute(part.attribute)) {
      part.extensionDelimiters = (flags & 2) ? "+-" : "";
    }
  }
  AllowanceTable table;
  const std::uint32_t source =
      table.addSource(AllowanceTable::SourceKind::kTexthash, "texthash:/fuzz");
  relaykit::Diagnostics diags;
  std::vector<std::string> principals;
  relaykit::forEachPostmapEntry(text, relaykit::SourceLocation{"fuzz", 1, 0}, &diags, false,
                                [&](relaykit::PostmapSourceEntry&& entry) {
                                  auto values = splitFileKey(entry.key, key.size());
                                  auto windows = parseAllowanceValue(entry.value);
                                  if (!values.isOk() || !windows.isOk()) {
                                    return;
                                  }
                                  auto principal = principalFromValues(key, *values);
                                  if (!principal) {
                                    return;
                                  }
                                  std::string problem;
                                  const std::vector<RateWindow> parsed = *windows;
                                  if (table.add(*principal, entry.key, std::move(*windows), source,
                                                entry.line, entry.column, &problem)) {
                                    const auto* e = table.find(*principal);
                                    FUZZ_CHECK(
                                        e != nullptr && table.windows(*e).size() == parsed.size(),
                                        "added entry " + printable(*principal));
                                    principals.push_back(*principal);
                                  }
                                });
  for (const std::string& p : principals) {
    const auto* e = table.search(key, p);
    FUZZ_CHECK(e != nullptr && table.find(p) == e, "exact search " + printable(p));
    (void)table.origin(*e);
  }
  // A principal of request-like values, searched (the @domain forms included).
  std::vector<std::string_view> probe(key.size(), std::string_view(value));
  if (auto p = principalFromValues(key, probe)) {
    if (const auto* e = table.search(key, *p)) {
      FUZZ_CHECK(!table.windows(*e).empty(), "searched entry has windows");
    }
  }
  return 0;
}

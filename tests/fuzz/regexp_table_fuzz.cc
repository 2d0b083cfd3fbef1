// SPDX-License-Identifier: Apache-2.0
// regexp_table_fuzz.cc: regexp_table(5) / pcre_table(5) text (common/regexp_table.h).
// Input: [flags] table text NUL key NUL key ... Properties: parsing never fails other than by
// diagnostics; a table that parsed answers every key exactly as its rule-by-rule evaluation
// (Postfix's order) does, so the RE2::Set shortcut never changes an answer.
#include <memory>
#include <string>

#include "common/diagnostics.h"
#include "common/regexp_table.h"
#include "tests/fuzz/fuzz_support.h"

using relaykit::fuzz::printable;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::uint8_t flags = in.byte();
  relaykit::RegexpTable::Options options{
      (flags & 1) ? relaykit::RegexpDialect::kPcre : relaykit::RegexpDialect::kPosix,
      (flags & 2) == 0};
  std::string_view text = in.text();
  relaykit::Diagnostics diags;
  auto table =
      relaykit::RegexpTable::parse(text, {"fuzz", 1, (flags & 4) ? 3 : 0}, options, &diags);
  (void)diags.formatAll();
  if (!table) {
    FUZZ_CHECK(diags.hasErrors(), "refused without an error");
    return 0;
  }
  (void)table->rules();
  for (int i = 0; i < 8 && !in.empty(); ++i) {
    std::string_view key = in.text();
    auto fast = table->match(key);
    auto slow = table->matchLinear(key);
    FUZZ_CHECK(fast.has_value() == slow.has_value(),
               "Set and linear disagree on " + printable(key));
    if (fast) {
      FUZZ_CHECK(fast->value == slow->value && fast->where.line == slow->where.line &&
                     fast->where.column == slow->where.column,
                 "Set and linear answers differ on " + printable(key));
    }
    (void)table->lookup(key);
  }
  return 0;
}

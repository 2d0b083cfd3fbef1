// SPDX-License-Identifier: Apache-2.0
// regexp_translate_fuzz.cc: the POSIX ERE to RE2 translator and the pcre check
// (common/regexp_translate.h). Input: [flags] pattern. Properties: a refusal always says why and
// where (an offset inside the pattern); an accepted translation is what RE2 compiles (it may
// still refuse it: that is reported at load time, not a crash).
#include <string>

#include <re2/re2.h>

#include "common/regexp_translate.h"
#include "tests/fuzz/fuzz_support.h"

using relaykit::fuzz::printable;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::uint8_t flags = in.byte();
  std::string_view pattern = in.rest();
  relaykit::RegexpTranslation t =
      (flags & 4) ? relaykit::checkPcreForRe2(pattern)
                  : relaykit::translatePosixToRe2(pattern, flags & 1, flags & 2);
  if (!t.ok) {
    FUZZ_CHECK(!t.error.empty() && t.errorOffset <= pattern.size(),
               "refusal of " + printable(pattern));
    return 0;
  }
  RE2::Options options;
  options.set_log_errors(false);
  options.set_encoding(RE2::Options::EncodingLatin1);
  options.set_case_sensitive((flags & 2) == 0);
  options.set_max_mem(8 << 20);
  RE2 re(t.re2, options);
  if (re.ok()) {
    std::string_view subject = pattern.substr(0, 64);
    (void)RE2::PartialMatch(subject, re);
  }
  return 0;
}

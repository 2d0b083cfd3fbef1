// SPDX-License-Identifier: Apache-2.0
// config_fuzz.cc: the YAML configuration loader from bytes (common/config.h), then the milter
// and policy sections' own compilers (milters/milter_config.h, policyd/policy_config.h), as
// `relaykit check` and every daemon run them. Properties: loading never throws, never hangs and
// never crashes; a refused config reports at least one error.
#include <memory>
#include <string>

#include "common/config.h"
#include "milters/milter_config.h"
#include "policyd/policy_config.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  relaykit::Diagnostics diags;
  std::shared_ptr<const relaykit::Config> config =
      relaykit::loadConfigText(text, "fuzz.yaml", &diags);
  (void)diags.formatAll();
  if (!config) {
    FUZZ_CHECK(diags.hasErrors(), "config refused without an error");
    return 0;
  }
  relaykit::Diagnostics milterDiags;
  auto milter = relaykit::milter::parseMilterConfig(config, &milterDiags);
  FUZZ_CHECK(milter != nullptr || milterDiags.hasErrors(), "milter refused without an error");
  relaykit::Diagnostics policyDiags;
  auto policy = relaykit::policy::parsePolicyConfig(*config, &policyDiags);
  FUZZ_CHECK(policy != nullptr || policyDiags.hasErrors(), "policy refused without an error");
  return 0;
}

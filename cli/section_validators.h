// SPDX-License-Identifier: Apache-2.0
// section_validators.h: the hook through which components add their own section checks to
// `relaykit check` (the shared sections are checked by loadConfig itself).
//
// A validator parses its section of an already loaded Config (e.g. parseMilterConfig for
// `milter:`) and reports every problem into `diags` as FILE:LINE:COL: message. It must not throw
// and must not touch the network. To add one, append an entry in section_validators.cc and link
// the component's library into the `relaykit` target (cli/CMakeLists.txt).
#pragma once

#include <vector>

#include "common/config.h"
#include "common/diagnostics.h"

namespace relaykit {

struct SectionValidator {
  const char* section;  // "milter", "policy", ... (for --help and messages)
  void (*validate)(const Config& config, Diagnostics* diags);
};

// Every registered validator, in the order they run.
const std::vector<SectionValidator>& sectionValidators();

}  // namespace relaykit

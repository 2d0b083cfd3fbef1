// SPDX-License-Identifier: Apache-2.0
// section_validators.cc: the list of component section validators `relaykit check` runs.
// Components append their entry here (see section_validators.h).
#include "cli/section_validators.h"

#include "cli/health_config.h"
#include "milters/milter_config.h"
#include "policyd/policy_config.h"

namespace relaykit {

const std::vector<SectionValidator>& sectionValidators() {
  static const std::vector<SectionValidator> validators = {
      {"milter", &validateMilterSection},
      {"policy", &validatePolicySection},
      {"health", &validateHealthSection},
  };
  return validators;
}

}  // namespace relaykit

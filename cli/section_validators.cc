// section_validators.cc: the list of component section validators `relaykit check` runs.
// Components append their entry here (see section_validators.h).
#include "cli/section_validators.h"

namespace relaykit {

const std::vector<SectionValidator>& sectionValidators() {
  static const std::vector<SectionValidator> validators = {
      // {"milter", &validateMilterSection},   // milter engineer
      // {"policy", &validatePolicySection},   // policy engineer
  };
  return validators;
}

}  // namespace relaykit

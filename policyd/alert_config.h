// SPDX-License-Identifier: Apache-2.0
// alert_config.h: reads `policy: alerts:` (alert.h AlertSettings) with YamlReader; every problem
// reported at FILE:LINE:COL into the reader's Diagnostics (a sendmail that is not executable on
// this host is a warning: the file may be checked elsewhere). Never throws.
#pragma once

#include <yaml-cpp/yaml.h>

#include "common/yaml_util.h"
#include "policyd/alert.h"

namespace relaykit::policy {

// `node`: the value of `alerts:` (undefined: no section, alerts off; null: the defaults).
// Fills *out (out->enabled when the section exists); errors go to r.diags().
void parseAlertSettings(const YamlReader& r, const YAML::Node& node, AlertSettings* out);

}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// limits_command.h: `relaykit limits -c FILE show|reset ...`. Registered in
// cli/main.cc with addLimitsCommand(app, &exitCode).
#pragma once

#include <CLI/CLI.hpp>

namespace relaykit {

// `relaykit limits -c FILE show [--limit NAME] [ATTR=VALUE...]`: with attributes, the state of
// every limit whose key they fill (units left per window, time until full again); without, the
// number of live counters per limit. `relaykit limits -c FILE reset [--limit NAME]
// (ATTR=VALUE... | --all)`: deletes those counters. Needs `policy: store: redis` (the memory
// store lives inside relaykit-policyd). Exit 0 done, 1 no limit applies to the attributes,
// 2 error (bad config, Redis unreachable, memory store).
void addLimitsCommand(CLI::App& app, int* exitCode);

}  // namespace relaykit

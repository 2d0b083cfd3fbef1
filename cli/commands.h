// SPDX-License-Identifier: Apache-2.0
// commands.h: the `relaykit` subcommands. Each addXxxCommand registers one CLI11 subcommand on
// `app`; when it is chosen and run, it stores the process exit code in *exitCode. New
// subcommands (rewrite, limits) add a function here and a line in main.cc.
#pragma once

#include <CLI/CLI.hpp>

namespace relaykit {

// `relaykit check -c FILE`: every problem as FILE:LINE:COL: message on stderr; exit 0 or 1.
void addCheckCommand(CLI::App& app, int* exitCode);
// `relaykit query -c FILE TABLE KEY...`: answers as relaykit-socketmapd would; exit 0 all found,
// 1 some not found, 2 error.
void addQueryCommand(CLI::App& app, int* exitCode);
// `relaykit postconf -c FILE [--check] [-C DIR]`: main.cf wiring for the config, or the live
// Postfix configuration's wiring traps (cli/postconf_command.cc).
void addPostconfCommand(CLI::App& app, int* exitCode);
// `relaykit health -c FILE`: a Nagios/Icinga plugin for the whole relay (cli/health_command.cc).
void addHealthCommand(CLI::App& app, int* exitCode);

}  // namespace relaykit

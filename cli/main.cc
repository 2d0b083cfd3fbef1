// SPDX-License-Identifier: Apache-2.0
// main.cc: the `relaykit` command-line tool: one CLI11 subcommand per job (commands.h).
#include <cstdio>

#include "cli/commands.h"
#include "cli/dkim_command.h"
#include "cli/limits_command.h"
#include "cli/rewrite_command.h"
#include "relaykit_version.h"

int main(int argc, char** argv) {
  CLI::App app{"relaykit: check configuration, query tables, test rules offline", "relaykit"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("relaykit ") + RELAYKIT_VERSION);
  int exitCode = 0;
  relaykit::addCheckCommand(app, &exitCode);
  relaykit::addQueryCommand(app, &exitCode);
  relaykit::addRewriteCommand(app, &exitCode);
  relaykit::addLimitsCommand(app, &exitCode);
  relaykit::addPostconfCommand(app, &exitCode);
  relaykit::addHealthCommand(app, &exitCode);
  relaykit::addDkimCommand(app, &exitCode);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    // Usage errors exit 2 (like the `query` errors), --help/--version exit 0.
    return code == 0 ? 0 : 2;
  }
  return exitCode;
}

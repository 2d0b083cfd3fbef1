// SPDX-License-Identifier: Apache-2.0
// check_command.cc: `relaykit check -c FILE`: loads the file as every daemon would, runs every
// component's section validator (also when the shared sections have errors), checks that each
// daemon's `user:` exists and can read the config and every file it names (file_access.h), and
// prints every problem (warnings included) as FILE:LINE:COL: message on stderr. Exit 0 when
// there is no error, 1 otherwise.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/section_validators.h"
#include "common/config.h"
#include "common/file_access.h"

namespace relaykit {

namespace {

int runCheck(const std::string& path) {
  Diagnostics diags;
  // A partly compiled config too, so the component sections are checked even when a shared
  // section has errors: every problem of the file in one run.
  auto config = loadConfigForCheck(path, &diags);
  if (config != nullptr) {
    for (const auto& v : sectionValidators()) {
      v.validate(*config, &diags);
    }
    for (DaemonSection section :
         {DaemonSection::kSocketmap, DaemonSection::kMilter, DaemonSection::kPolicy}) {
      checkDaemonAccess(*config, section, &diags);
    }
  }
  std::string text = diags.formatAll();
  std::fwrite(text.data(), 1, text.size(), stderr);
  return config != nullptr && !diags.hasErrors() ? 0 : 1;
}

}  // namespace

void addCheckCommand(CLI::App& app, int* exitCode) {
  auto path = std::make_shared<std::string>(kDefaultConfigPath);
  CLI::App* sub = app.add_subcommand(
      "check", "validate the configuration: print every problem as FILE:LINE:COL: message");
  sub->add_option("-c,--config", *path, "configuration file")->capture_default_str();
  sub->callback([path, exitCode] { *exitCode = runCheck(*path); });
}

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// postconf_command.cc: `relaykit postconf -c FILE [--check] [-C DIR]`.
//  - without --check: prints the main.cf settings that wire the configured daemons into Postfix
//    (postfix_wiring.h), one `name = value` per line, ready for `postconf -e`; exit 0, or 1 when
//    the configuration is refused (its problems on stderr);
//  - with --check: reads the live settings of the Postfix instance (-C DIR, else $MAIL_CONFIG,
//    else /etc/postfix) with `postconf -x` and `postconf -M` (fork/exec, no shell, bounded in
//    time) and prints each known trap with its fix; exit 0 when none is found, 1 when some are
//    (or the configuration is refused), 2 when postconf cannot be run.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/postfix_wiring.h"
#include "common/config.h"
#include "common/run_program.h"
#include "milters/milter_config.h"
#include "policyd/policy_config.h"

namespace relaykit {

namespace {

constexpr int kPostconfOk = 0;
constexpr int kPostconfTrapsOrConfigError = 1;
constexpr int kPostconfCannotRun = 2;
// postconf answers in milliseconds; a hung one (NFS, a broken dynamic map) must not hang us.
constexpr std::chrono::seconds kPostconfTimeout{15};

struct PostconfOptions {
  std::string configPath = kDefaultConfigPath;
  std::string postfixDir;
  std::string queueDirectory = kDefaultPostfixQueueDirectory;
  bool check = false;
};

StatusOr<std::string> runPostconf(const std::string& dir, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"postconf", "-c", dir};
  argv.insert(argv.end(), args.begin(), args.end());
  auto result = runProgram(argv, kPostconfTimeout);
  if (!result) {
    return result.status();
  }
  if (result->exitCode != 0 || result->timedOut) {
    return Status::error("postconf -c " + dir + ": " + result->describeFailure());
  }
  return result->out;
}

int runPostconfCommand(const PostconfOptions& options) {
  Diagnostics diags;
  auto config = loadConfig(options.configPath, &diags);
  std::shared_ptr<const milter::MilterConfig> milterConfig;
  if (config != nullptr && config->milter.present) {
    milterConfig = milter::parseMilterConfig(*config, &diags);
  }
  if (config == nullptr || diags.hasErrors()) {
    std::string text = diags.formatAll();
    std::fwrite(text.data(), 1, text.size(), stderr);
    return kPostconfTrapsOrConfigError;
  }
  WiringInputs in;
  in.config = config.get();
  in.queueDirectory = options.queueDirectory;
  if (milterConfig != nullptr && milterConfig->senderTable != nullptr) {
    in.rewriteSenderTable = milterConfig->senderTable->name();
  }
  if (milterConfig != nullptr && milterConfig->fromTable != nullptr) {
    in.rewriteFromTable = milterConfig->fromTable->name();
  }
  if (config->policy.present) {
    Diagnostics policyDiags;  // problems are relaykit check's to report; here: stay with RCPT
    if (auto policy = policy::parsePolicyConfig(*config, &policyDiags)) {
      in.policyNeedsRcpt = policy->tracksRecipients;
    }
  }
  if (!options.check) {
    std::string text = wiringFor(in);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return kPostconfOk;
  }
  const std::string dir = postfixConfigDir(options.postfixDir);
  auto params = runPostconf(dir, {"-x"});
  if (!params) {
    std::fprintf(stderr, "relaykit postconf: %s\n", params.status().message().c_str());
    return kPostconfCannotRun;
  }
  auto master = runPostconf(dir, {"-M"});
  if (!master) {
    std::fprintf(stderr, "relaykit postconf: %s\n", master.status().message().c_str());
    return kPostconfCannotRun;
  }
  LiveSettings live;
  live.params = parsePostconf(*params);
  live.services = parseMasterServices(*master);
  auto traps = findTraps(in, live);
  for (const auto& trap : traps) {
    std::printf("%s: %s\n  fix: %s\n", trap.id.c_str(), trap.problem.c_str(), trap.fix.c_str());
  }
  if (traps.empty()) {
    std::printf("no known trap in the Postfix configuration %s\n", dir.c_str());
    return kPostconfOk;
  }
  std::printf("%zu trap(s) found in the Postfix configuration %s\n", traps.size(), dir.c_str());
  return kPostconfTrapsOrConfigError;
}

}  // namespace

void addPostconfCommand(CLI::App& app, int* exitCode) {
  auto options = std::make_shared<PostconfOptions>();
  CLI::App* sub = app.add_subcommand(
      "postconf",
      "print the main.cf settings wiring relaykit into Postfix (for postconf -e), or with "
      "--check report the known wiring traps of the live Postfix configuration");
  sub->add_option("-c,--config", options->configPath, "relaykit configuration file")
      ->capture_default_str();
  sub->add_flag("--check", options->check,
                "read the live postconf -x / postconf -M and report each trap with its fix; "
                "exit 0 when none, 1 when some");
  sub->add_option("-C,--postfix-config", options->postfixDir,
                  "Postfix configuration directory (default: $MAIL_CONFIG, else /etc/postfix)");
  sub->add_option("--queue-directory", options->queueDirectory,
                  "Postfix queue directory: unix sockets under it are written relative to it")
      ->capture_default_str();
  sub->callback([options, exitCode] { *exitCode = runPostconfCommand(*options); });
}

}  // namespace relaykit

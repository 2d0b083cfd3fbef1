// rewrite_command.cc: `relaykit rewrite`: relaykit-milter's engine offline on one message (see
// rewrite_command.h). Thin: options and I/O only; the work is milter::rewriteOffline().
#include "cli/rewrite_command.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/ip_network.h"
#include "milters/milter_config.h"
#include "milters/offline_rewrite.h"

namespace relaykit {
namespace {

constexpr int kRewriteOk = 0;
constexpr int kRewriteTableError = 1;
constexpr int kRewriteUsageError = 2;

struct RewriteOptions {
  std::string configPath = kDefaultConfigPath;
  std::string sender;
  std::vector<std::string> recipients;
  std::string client;
  std::string clientName = "unknown";
  std::string sasl;
  std::string helo;
  std::string queueId = "OFFLINE";
  std::string message = "-";
  bool diffOnly = false;
};

int runRewrite(const RewriteOptions& options) {
  Diagnostics diags;
  std::shared_ptr<const Config> config = loadConfig(options.configPath, &diags);
  std::shared_ptr<const milter::MilterConfig> mc =
      config ? milter::parseMilterConfig(config, &diags) : nullptr;
  std::string problems = diags.formatAll();
  std::fwrite(problems.data(), 1, problems.size(), stderr);
  if (!mc) {
    return kRewriteUsageError;
  }
  milter::Envelope env;
  env.sender = options.sender;
  if (env.sender.size() >= 2 && env.sender.front() == '<' && env.sender.back() == '>') {
    env.sender = env.sender.substr(1, env.sender.size() - 2);
  }
  env.recipients = options.recipients;
  env.saslUser = options.sasl;
  env.helo = options.helo;
  env.clientName = options.clientName;
  env.queueId = options.queueId;
  if (!options.client.empty()) {
    StatusOr<IpAddress> ip = IpAddress::parse(options.client);
    if (!ip) {
      std::fprintf(stderr, "relaykit: --client %s: %s\n", options.client.c_str(),
                   ip.status().message().c_str());
      return kRewriteUsageError;
    }
    env.clientAddress = *ip;
  }
  std::string text;
  if (options.message == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(options.message, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "relaykit: cannot read %s\n", options.message.c_str());
      return kRewriteUsageError;
    }
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  milter::OfflineReport report = milter::rewriteOffline(*mc, env, text);
  if (report.outcome.error) {
    std::fprintf(stderr, "relaykit: %s (relaykit-milter would apply on_error=%s)\n",
                 report.outcome.errorReason.c_str(),
                 mc->onError == milter::OnError::kAccept ? "accept" : "tempfail");
    return kRewriteTableError;
  }
  if (!options.diffOnly) {
    std::fwrite(report.message.data(), 1, report.message.size(), stdout);
    std::fflush(stdout);
  }
  std::string out = "--- before\n+++ after\n" + report.diff;
  for (const std::string& note : report.outcome.notes) {
    out += "note: " + note + "\n";
  }
  out +=
      report.logLine.empty() ? std::string("log: (unchanged)\n") : "log: " + report.logLine + "\n";
  std::fwrite(out.data(), 1, out.size(), stderr);
  return kRewriteOk;
}

}  // namespace

void addRewriteCommand(CLI::App& app, int* exitCode) {
  auto options = std::make_shared<RewriteOptions>();
  CLI::App* sub = app.add_subcommand(
      "rewrite", "run a message through the milter: rules offline; print the result and a diff");
  sub->add_option("-c,--config", options->configPath, "configuration file")->capture_default_str();
  sub->add_option("--sender", options->sender, "envelope sender (default: the null sender)");
  sub->add_option("--rcpt", options->recipients, "envelope recipient (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("--client", options->client, "client IP address");
  sub->add_option("--client-name", options->clientName, "client host name");
  sub->add_option("--sasl", options->sasl, "SASL user name (authenticated)");
  sub->add_option("--helo", options->helo, "HELO/EHLO name");
  sub->add_option("--queue-id", options->queueId, "queue id for the log line")
      ->capture_default_str();
  sub->add_flag("--diff-only", options->diffOnly, "print only what changed (on stderr)");
  sub->add_option("message", options->message, "message file; - or absent reads stdin");
  sub->callback([options, exitCode] { *exitCode = runRewrite(*options); });
}

}  // namespace relaykit

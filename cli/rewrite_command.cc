// SPDX-License-Identifier: Apache-2.0
// rewrite_command.cc: `relaykit rewrite`: relaykit-milter's engine offline on one message (see
// rewrite_command.h). Thin: options and I/O only; the work is milter::rewriteOffline(). The
// message is read whole, up to --size-limit bytes (Postfix's message_size_limit default); a
// larger, unreadable or non-file input is refused with its reason and exit 2.
#include "cli/rewrite_command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
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
// Postfix's message_size_limit default: larger mail never reaches the milter.
constexpr size_t kDefaultMessageSizeLimit = 10240000;
// The largest --size-limit accepted: the message, its copy and the output stay in memory.
constexpr size_t kMaxMessageSizeLimit = 1024 * 1024 * 1024;
constexpr size_t kReadChunk = 64 * 1024;

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
  size_t sizeLimit = kDefaultMessageSizeLimit;
  bool diffOnly = false;
  bool nonSmtpd = false;
  long long time = 0;  // t= of DKIM signatures; 0: now
};

// Reads the whole message from `path` ("-": stdin) into *text. Returns "" or the reason it
// cannot: not found, a directory or other non-file, unreadable, larger than `limit` bytes.
std::string readMessage(const std::string& path, size_t limit, std::string* text) {
  bool useStdin = path == "-";
  int fd = useStdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return std::strerror(errno);
  }
  std::string problem;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    problem = std::strerror(errno);
  } else if (S_ISDIR(st.st_mode)) {
    problem = "is a directory";
  } else if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode) &&
             !S_ISSOCK(st.st_mode)) {
    problem = "not a regular file";
  } else if (S_ISREG(st.st_mode) && static_cast<unsigned long long>(st.st_size) > limit) {
    problem = std::to_string(st.st_size) + " bytes, larger than the size limit (" +
              std::to_string(limit) + " bytes; see --size-limit)";
  }
  while (problem.empty()) {
    size_t old = text->size();
    text->resize(old + kReadChunk);
    ssize_t n = ::read(fd, text->data() + old, kReadChunk);
    if (n < 0 && errno == EINTR) {
      text->resize(old);
      continue;
    }
    if (n < 0) {
      problem = std::strerror(errno);
      text->resize(old);
      break;
    }
    text->resize(old + static_cast<size_t>(n));
    if (n == 0) {
      break;
    }
    if (text->size() > limit) {
      problem =
          "larger than the size limit (" + std::to_string(limit) + " bytes; see --size-limit)";
    }
  }
  if (!useStdin) {
    ::close(fd);
  }
  if (!problem.empty()) {
    text->clear();
  }
  return problem;
}

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
  std::string problem = readMessage(options.message, options.sizeLimit, &text);
  if (!problem.empty()) {
    std::fprintf(stderr, "relaykit: %s: %s\n",
                 options.message == "-" ? "stdin" : options.message.c_str(), problem.c_str());
    return kRewriteUsageError;
  }
  milter::OfflineSigning signing;
  // Without --client the message is taken as a local submission (sendmail: non_smtpd_milters).
  signing.nonSmtpd = options.nonSmtpd || options.client.empty();
  signing.now = options.time > 0 ? options.time : static_cast<std::int64_t>(std::time(nullptr));
  milter::OfflineReport report = milter::rewriteOffline(*mc, env, text, signing);
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
  if (!report.dkimNote.empty()) {
    out += report.dkimNote + "\n";
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
  sub->add_option("--size-limit", options->sizeLimit,
                  "largest message read, in bytes (Postfix's message_size_limit)")
      ->capture_default_str()
      ->check(CLI::Range(static_cast<size_t>(1), kMaxMessageSizeLimit));
  sub->add_flag("--diff-only", options->diffOnly, "print only what changed (on stderr)");
  sub->add_flag("--non-smtpd", options->nonSmtpd,
                "DKIM: the message came through non_smtpd_milters (default without --client)");
  sub->add_option("--time", options->time, "DKIM: t= of the signatures (seconds; default now)")
      ->check(CLI::PositiveNumber);
  sub->add_option("message", options->message, "message file; - or absent reads stdin");
  sub->callback([options, exitCode] { *exitCode = runRewrite(*options); });
}

}  // namespace relaykit

// main.cc: relaykit-milter start-up: options, config, socket, privileges, signals, smfi_main.
//
// Order (Postfix's least-privilege order): load and check the config, open the milter socket and
// the metrics listener, drop privileges, then serve. SIGHUP reloads (a bad config is refused and
// the old one keeps serving); SIGTERM/SIGINT stop in well under a second (smfi_stop, then the
// messages in flight are finished and the process exits). Fatal exits only at
// start-up, with every configuration problem printed as FILE:LINE:COL.
#include <getopt.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "common/config.h"
#include "common/server/listener.h"
#include "common/server/logging.h"
#include "common/server/metrics.h"
#include "common/server/privileges.h"
#include "milters/milter_callbacks.h"
#include "milters/session_runner.h"
#include "milters/socket_wrap.h"

namespace relaykit::milter {
namespace {

constexpr int kMilterTimeoutSeconds = 600;  // libmilter's I/O timeout towards Postfix
constexpr int kStopGraceSeconds = 10;       // SIGTERM: longest wait for messages in flight

struct Options {
  std::string configPath = kDefaultConfigPath;
  bool foreground = false;
  bool check = false;
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: relaykit-milter [-c FILE] [-f] [--check]\n"
               "  -c, --config FILE  configuration (default %s)\n"
               "  -f, --foreground   log to stderr instead of syslog\n"
               "      --check        validate the configuration, print problems, exit 0 or 1\n",
               kDefaultConfigPath);
}

bool parseOptions(int argc, char** argv, Options* opts) {
  static const option kLong[] = {{"config", required_argument, nullptr, 'c'},
                                 {"foreground", no_argument, nullptr, 'f'},
                                 {"check", no_argument, nullptr, 'C'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "c:fh", kLong, nullptr)) != -1) {
    switch (ch) {
      case 'c':
        opts->configPath = optarg;
        break;
      case 'f':
        opts->foreground = true;
        break;
      case 'C':
        opts->check = true;
        break;
      case 'h':
        usage(stdout);
        std::exit(0);
      default:
        usage(stderr);
        return false;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return false;
  }
  return true;
}

// Loads and compiles the whole file; nullptr after printing/logging the problems.
std::shared_ptr<const MilterConfig> load(const std::string& path, Diagnostics* diags) {
  std::shared_ptr<const Config> config = loadConfig(path, diags);
  if (!config) {
    return nullptr;
  }
  return parseMilterConfig(config, diags);
}

std::string libmilterSpec(const Endpoint& ep) {
  if (ep.kind == Endpoint::Kind::kUnix) {
    return "unix:" + ep.path;
  }
  bool v6 = ep.host.find(':') != std::string::npos;
  std::string spec = (v6 ? "inet6:" : "inet:") + std::to_string(ep.port);
  if (!ep.host.empty()) {
    spec += "@" + ep.host;
  }
  return spec;
}

void signalLoop(std::string path, Endpoint endpoint) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  for (;;) {
    int sig = 0;
    if (realSigwait(&set, &sig) != 0) {
      continue;
    }
    if (sig == SIGHUP) {
      Diagnostics diags;
      std::shared_ptr<const MilterConfig> fresh = load(path, &diags);
      for (const Diagnostic& d : diags.all()) {
        logMessage(
            d.severity == Diagnostic::Severity::kError ? LogLevel::kError : LogLevel::kWarning,
            d.format());
      }
      if (fresh) {
        if (fresh->daemon.listen != activeConfig()->daemon.listen) {
          logWarning("reload: listen changed; a restart is needed for it to take effect");
        }
        setActiveConfig(std::move(fresh));
        logInfo("reload: configuration " + path + " loaded");
      } else {
        logError("reload: configuration refused; the previous one keeps serving");
      }
      continue;
    }
    logInfo(std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    // smfi_stop() takes a mutex libmilter's listener holds while it polls (up to 5 s): call it
    // from a helper thread so new connections stop being served when it gets through, wake the
    // listener with a connection, and meanwhile finish the messages in flight here.
    std::thread([] { smfi_stop(); }).detach();
    StatusOr<int> fd = connectTo(endpoint);
    if (fd) {
      close(*fd);
    }
    // libmilter's worker pool lingers for seconds after the listener stops; finish the messages
    // in flight (bounded), then exit. A message cut short is retried by Postfix (tempfail).
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kStopGraceSeconds);
    while (activeMessages() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    logInfo("stopped");
    std::_Exit(0);
  }
}

int run(int argc, char** argv) {
  // Before any thread exists: every thread inherits these blocked; only signalLoop takes them.
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGHUP);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGINT);
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Options opts;
  if (!parseOptions(argc, argv, &opts)) {
    return 2;
  }
  initLogging("relaykit-milter", opts.foreground || opts.check);
  Diagnostics diags;
  std::shared_ptr<const MilterConfig> config = load(opts.configPath, &diags);
  if (opts.check) {
    for (const Diagnostic& d : diags.all()) {
      std::printf("%s\n", d.format().c_str());
    }
    return config ? 0 : 1;
  }
  for (const Diagnostic& d : diags.all()) {
    logMessage(d.severity == Diagnostic::Severity::kError ? LogLevel::kError : LogLevel::kWarning,
               d.format());
  }
  if (!config) {
    logFatal("configuration " + opts.configPath + " refused");
    return 1;
  }
  const DaemonSettings& daemon = config->daemon;
  if (daemon.listen.empty()) {
    logFatal("milter: no listen endpoint");
    return 1;
  }
  if (daemon.listen.size() > 1) {
    logWarning("milter: libmilter serves one endpoint per process; using " +
               daemon.listen.front().toString());
  }
  const Endpoint endpoint = daemon.listen.front();
  setActiveConfig(config);

  std::string spec = libmilterSpec(endpoint);
  setSessionTimeout(kMilterTimeoutSeconds);
  setSessionLimit(config->maxSessions);
  if (smfi_setconn(const_cast<char*>(spec.c_str())) != MI_SUCCESS ||
      smfi_settimeout(kMilterTimeoutSeconds) != MI_SUCCESS ||
      smfi_register(*milterDescription()) != MI_SUCCESS) {
    logFatal("cannot set up libmilter for " + endpoint.toString());
    return 1;
  }
  int rc;
  if (daemon.socketMode && endpoint.kind == Endpoint::Kind::kUnix) {
    mode_t oldMask = umask(static_cast<mode_t>(~*daemon.socketMode & 0777));
    rc = smfi_opensocket(true);
    umask(oldMask);
  } else {
    rc = smfi_opensocket(true);
  }
  if (rc != MI_SUCCESS) {
    logFatal("cannot listen on " + endpoint.toString());
    return 1;
  }
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    if (daemon.socketMode) {
      chmod(endpoint.path.c_str(), static_cast<mode_t>(*daemon.socketMode));
    }
    if (!daemon.socketOwner.empty()) {
      Status st = setSocketOwner(endpoint.path, daemon.socketOwner);
      if (!st) {
        logFatal(st.message());
        return 1;
      }
    }
  }

  MetricsRegistry registry;
  registerStandardMetrics(&registry);
  initMilterMetrics(&registry);
  std::unique_ptr<MetricsThread> metrics;
  if (daemon.metricsListen) {
    StatusOr<std::unique_ptr<MetricsThread>> started =
        MetricsThread::start(*daemon.metricsListen, &registry);
    if (!started) {
      logFatal("metrics: " + started.status().message());
      return 1;
    }
    metrics = std::move(*started);
  }
  Status dropped = dropPrivileges(daemon.user);
  if (!dropped) {
    logFatal(dropped.message());
    return 1;
  }
  std::thread signals(signalLoop, opts.configPath, endpoint);
  signals.detach();
  if (std::getenv("RELAYKIT_MILTER_FAULT") != nullptr) {
    logWarning("RELAYKIT_MILTER_FAULT is set: a test hook that fails messages on purpose");
  }
  logInfo("listening on " + endpoint.toString());
  rc = smfi_main();
  metrics.reset();
  logInfo("stopped");
  return rc == MI_SUCCESS ? 0 : 1;
}

}  // namespace
}  // namespace relaykit::milter

int main(int argc, char** argv) {
  return relaykit::milter::run(argc, argv);
}

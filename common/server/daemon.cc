// SPDX-License-Identifier: Apache-2.0
// daemon.cc: the shared daemon main (options, load, bind, drop privileges, loop, reload, stop).
// See daemon.h for the sequence and its guarantees. Fatal exits happen only at start-up.
#include "common/server/daemon.h"

#include <event2/event.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <thread>

#include <CLI/CLI.hpp>
#ifdef RELAYKIT_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/file_access.h"
#include "common/file_stamp.h"
#include "common/server/listener.h"
#include "common/server/logging.h"
#include "common/server/privileges.h"
#include "common/server/server.h"
#include "relaykit_version.h"

namespace relaykit {

namespace {

// How often the files of Service::watchedFiles() are stat()ed.
constexpr int kWatchIntervalSeconds = 1;
// The reload worker's nice value (the loop thread keeps the daemon's).
constexpr int kReloadWorkerNice = 10;

// Start-up failure: logged, and also on stderr when logging goes to syslog, so a failed start is
// visible to whoever started the daemon.
int startupFailure(const std::string& message, bool foreground) {
  logFatal(message);
  if (!foreground) {
    std::fprintf(stderr, "%s\n", message.c_str());
  }
  notifyServiceManager("STATUS=start-up failed: " + message);
  return kExitConfigError;
}

std::string describeListen(const DaemonSettings& settings, const std::vector<int>& fds) {
  std::string out;
  for (std::size_t i = 0; i < settings.listen.size(); ++i) {
    Endpoint ep = settings.listen[i];
    if (ep.kind == Endpoint::Kind::kInet && ep.port == 0 && i < fds.size()) {
      ep.port = localPort(fds[i]);
    }
    if (!out.empty()) {
      out += ", ";
    }
    out += ep.toString();
  }
  return out;
}

bool sameDaemonSettings(const DaemonSettings& a, const DaemonSettings& b) {
  return a.listen == b.listen && a.socketMode == b.socketMode && a.socketOwner == b.socketOwner &&
         a.user == b.user && a.metricsListen == b.metricsListen && a.allowedUsers == b.allowedUsers;
}

// Reload runs in two halves so the loop keeps answering while a large file compiles:
//  - a worker thread reads and compiles the file (loadConfig: YAML, tables) and validates the
//    service's part (Service::configure with install=false), touching nothing the loop uses;
//  - it then writes one byte to a pipe; the loop thread takes the result and installs it
//    (Service::configure with install=true on the compiled Config: a snapshot swap).
// One reload at a time: a SIGHUP during a reload marks another one to follow.
struct LoopContext {
  std::string configPath;
  Service* service = nullptr;
  event_base* base = nullptr;
  DaemonSettings running;  // what was bound at start-up
  Counter* reloadsOk = nullptr;
  Counter* reloadsRefused = nullptr;
  Gauge* lastReloadOk = nullptr;
  // Reload state: touched on the loop thread, except `compiled`/`compileDiags` which the worker
  // fills before writing to doneFds[1] (the pipe orders the accesses).
  int doneFds[2] = {-1, -1};
  std::thread worker;
  bool reloading = false;
  bool reloadAgain = false;
  std::shared_ptr<const Config> compiled;
  Diagnostics compileDiags;
  // Watched files (Service::watchedFiles) by path: the stamp seen at the last check, and the
  // stamp a reload was last started for (not tried again when that reload was refused).
  struct WatchState {
    std::optional<FileStamp> seen;
    std::optional<FileStamp> tried;
    FileStamp now;  // this check's
  };
  std::map<std::string, WatchState> watch;
};

std::size_t countErrors(const Diagnostics& diags) {
  std::size_t errors = 0;
  for (const auto& d : diags.all()) {
    errors += d.severity == Diagnostic::Severity::kError ? 1 : 0;
  }
  return errors;
}

void refuseReload(LoopContext* ctx, std::size_t errors) {
  logError("reload refused (" + std::to_string(errors) +
           " problem(s) above): still serving the previous configuration");
  ctx->reloadsRefused->inc();
  ctx->lastReloadOk->set(0);
  notifyServiceManager("READY=1\nSTATUS=reload refused: still serving the previous configuration");
}

void startReload(LoopContext* ctx) {
  ctx->reloading = true;
  notifyServiceManager("RELOADING=1");
  logInfo("reloading configuration from " + ctx->configPath);
  ctx->worker = std::thread([ctx] {
    // Below the loop thread (Linux: a nice value per thread): on a busy machine the compile
    // takes the CPU the loop does not use, not the loop's.
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kReloadWorkerNice);
    Diagnostics diags;
    std::shared_ptr<const Config> config;
    try {
      config = loadServiceConfig(ctx->configPath, *ctx->service, /*install=*/false, &diags);
    } catch (const std::exception& e) {
      diags.error(SourceLocation{ctx->configPath, 0, 0},
                  std::string("configuration could not be compiled: ") + e.what());
      config = nullptr;
    }
    ctx->compiled = std::move(config);
    ctx->compileDiags = std::move(diags);
    const char done = 1;
    while (write(ctx->doneFds[1], &done, 1) < 0 && errno == EINTR) {
    }
  });
}

// Once a second (loop thread): a watched file whose stamp differs from the one the installed
// state was read with, and was the same at the previous check (so a file being written is read
// once it is complete), starts a reload as SIGHUP does.
void onWatchTimer(evutil_socket_t, short, void* arg) {
  auto* ctx = static_cast<LoopContext*>(arg);
  if (ctx->reloading) {
    return;
  }
  std::map<std::string, LoopContext::WatchState> next;  // one state per path, however named
  std::string changed;
  for (const WatchedFile& file : ctx->service->watchedFiles()) {
    auto [it, fresh] = next.try_emplace(file.path);
    LoopContext::WatchState& state = it->second;
    if (fresh) {
      if (const auto old = ctx->watch.find(file.path); old != ctx->watch.end()) {
        state = old->second;
      }
      state.now = stampFile(file.path);
    }
    if (state.now != file.stamp && state.seen == state.now && state.tried != state.now &&
        changed.empty()) {
      changed = file.path;
      state.tried = state.now;
    }
  }
  for (auto& [path, state] : next) {
    state.seen = state.now;
  }
  ctx->watch = std::move(next);
  if (!changed.empty()) {
    logInfo(changed + " changed: reloading");
    startReload(ctx);
  }
}

void onReload(evutil_socket_t, short, void* arg) {
  auto* ctx = static_cast<LoopContext*>(arg);
  if (ctx->reloading) {
    ctx->reloadAgain = true;
    logInfo("reload requested while one is in progress: another one follows it");
    return;
  }
  startReload(ctx);
}

// The worker finished (loop thread): install its result, start the next reload if one waits.
void onReloadCompiled(evutil_socket_t fd, short, void* arg) {
  auto* ctx = static_cast<LoopContext*>(arg);
  char buf[16];
  while (read(fd, buf, sizeof buf) > 0) {
  }
  if (!ctx->reloading) {
    return;
  }
  ctx->worker.join();
  ctx->reloading = false;
  std::shared_ptr<const Config> config = std::move(ctx->compiled);
  Diagnostics diags = std::move(ctx->compileDiags);
  ctx->compileDiags = Diagnostics();
  logDiagnostics(diags);
  if (!config) {
    refuseReload(ctx, countErrors(diags));
  } else {
    Diagnostics installDiags;
    if (!ctx->service->configure(config, &installDiags, /*install=*/true) ||
        installDiags.hasErrors()) {
      logDiagnostics(installDiags);
      refuseReload(ctx, countErrors(installDiags));
    } else {
      if (!sameDaemonSettings(config->daemon(ctx->service->section()), ctx->running)) {
        logWarning(
            "listen, socket, user or metrics_listen settings changed: they take effect at "
            "the next restart");
      }
      ctx->reloadsOk->inc();
      ctx->lastReloadOk->set(1);
      logInfo("configuration reloaded");
      notifyServiceManager("READY=1\nSTATUS=configuration reloaded");
    }
  }
  if (ctx->reloadAgain) {
    ctx->reloadAgain = false;
    startReload(ctx);
  }
}

// allowed_users can only be checked where the kernel names the peer's user.
void warnUncheckableAllowedUsers(const DaemonSettings& settings) {
  if (!settings.allowedUsers) {
    return;
  }
  for (const auto& ep : settings.listen) {
    if (ep.kind != Endpoint::Kind::kInet) {
      continue;
    }
    const bool loopback = ep.host == "127.0.0.1" || ep.host == "::1" || ep.host == "localhost" ||
                          ep.host.rfind("127.", 0) == 0;
    if (!loopback) {
      logWarning("allowed_users: " + ep.toString() +
                 " is not a loopback address: connections from other hosts are refused "
                 "(their user cannot be known)");
    }
  }
}

void onStop(evutil_socket_t sig, short, void* arg) {
  auto* ctx = static_cast<LoopContext*>(arg);
  logInfo(std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
  event_base_loopbreak(ctx->base);
}

}  // namespace

PeerPolicy peerPolicyFor(const DaemonSettings& settings) {
  PeerPolicy policy;
  policy.trustedUids = defaultTrustedUids();
  if (settings.allowedUsers) {
    std::vector<uid_t> uids(settings.allowedUids.begin(), settings.allowedUids.end());
    policy.trustedUids.insert(policy.trustedUids.end(), uids.begin(), uids.end());
    policy.allowedUids = std::move(uids);
  }
  return policy;
}

std::string versionLine(const std::string& program) {
  return program + " (relaykit) " + RELAYKIT_VERSION;
}

void notifyServiceManager(const std::string& state) {
#ifdef RELAYKIT_HAVE_SYSTEMD
  int rc = sd_notify(0, state.c_str());
  if (rc < 0) {
    logDebug("sd_notify(" + state + ") failed: " + std::to_string(rc));
  }
#else
  (void)state;
#endif
}

MetricsRegistry& daemonMetrics() {
  static MetricsRegistry* registry = [] {
    auto* r = new MetricsRegistry();  // lives until exit
    registerStandardMetrics(r);       // relaykit_build_info and process_* for every daemon
    return r;
  }();
  return *registry;
}

std::optional<DaemonOptions> parseDaemonOptions(int argc, char** argv, const std::string& program,
                                                int* exitCode) {
  DaemonOptions options;
  CLI::App app{program + ": relaykit daemon (see " + program + "(8))", program};
  app.add_option("-c,--config", options.configPath, "configuration file")->capture_default_str();
  app.add_flag("-f,--foreground", options.foreground,
               "log to stderr (with <N> priority prefixes) instead of syslog");
  app.add_flag("-v,--verbose", options.verbose, "log debug messages too");
  app.add_flag("--check", options.check,
               "validate the configuration, print every problem, exit 0 (valid) or 1");
  app.set_version_flag("--version", versionLine(program));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version print on stdout and exit 0; usage errors print the message and a
    // hint on stderr and exit 2 (CLI11's own codes, e.g. 109, are not ours).
    int code = app.exit(e);
    *exitCode = code == 0 ? kExitOk : kExitUsage;
    return std::nullopt;
  }
  return options;
}

void printDiagnostics(const Diagnostics& diags, std::FILE* out) {
  std::string text = diags.formatAll();
  std::fwrite(text.data(), 1, text.size(), out);
  std::fflush(out);
}

void logDiagnostics(const Diagnostics& diags) {
  for (const auto& d : diags.all()) {
    Diagnostic plain = d;
    plain.severity = Diagnostic::Severity::kError;  // the level carries the severity
    if (d.severity == Diagnostic::Severity::kWarning) {
      logWarning(plain.format());
    } else {
      logError(plain.format());
    }
  }
}

std::shared_ptr<const Config> loadServiceConfig(const std::string& path, Service& service,
                                                bool install, Diagnostics* diags) {
  auto config = loadConfig(path, diags);
  if (!config) {
    return nullptr;
  }
  if (!service.configure(config, diags, install) || diags->hasErrors()) {
    return nullptr;
  }
  return config;
}

StatusOr<std::vector<int>> bindEndpoints(const DaemonSettings& settings) {
  std::vector<int> fds;
  ListenOptions options;
  options.socketMode = settings.socketMode;
  options.socketOwner = settings.socketOwner;
  for (const auto& ep : settings.listen) {
    auto fd = openListener(ep, options);
    if (!fd) {
      for (int open : fds) {
        close(open);
      }
      return fd.status();
    }
    fds.push_back(*fd);
  }
  return fds;
}

int runDaemon(int argc, char** argv, const std::string& program, Service& service) {
  int exitCode = 0;
  auto options = parseDaemonOptions(argc, argv, program, &exitCode);
  if (!options) {
    return exitCode;
  }
  if (options->check) {
    Diagnostics diags;
    auto config = loadServiceConfig(options->configPath, service, /*install=*/false, &diags);
    if (config) {
      checkDaemonAccess(*config, service.section(), &diags);
    }
    printDiagnostics(diags, stderr);
    return config && !diags.hasErrors() ? kExitOk : kExitConfigError;
  }
  const bool fg = options->foreground;
  initLogging(program, fg);
  if (options->verbose) {
    setLogLevel(LogLevel::kDebug);
  }
  std::signal(SIGPIPE, SIG_IGN);
  // A SIGHUP before the event loop's handler is in place (start-up: loading, binding) must not
  // kill the daemon (its default action): it is ignored until the loop takes it over.
  std::signal(SIGHUP, SIG_IGN);

  Diagnostics diags;
  auto config = loadServiceConfig(options->configPath, service, /*install=*/true, &diags);
  logDiagnostics(diags);
  if (!config) {
    if (!fg) {
      printDiagnostics(diags, stderr);
    }
    return startupFailure("configuration " + options->configPath + " refused", fg);
  }
  logDebug("configuration " + options->configPath + " loaded (section " +
           daemonSectionName(service.section()) + ")");
  const DaemonSettings settings = config->daemon(service.section());
  config.reset();

  // Before any socket: the connection caps are sized from the limit in force.
  const std::uint64_t fileLimit = raiseOpenFileLimit();
  event_base* base = event_base_new();
  if (base == nullptr) {
    return startupFailure("cannot create the event loop", fg);
  }
  auto fds = bindEndpoints(settings);
  if (!fds) {
    return startupFailure(fds.status().message(), fg);
  }
  const std::string listening = describeListen(settings, *fds);
  int result = 0;
  {
    Server server(base, &service, service.limits());
    server.setPeerPolicy(peerPolicyFor(settings));
    for (std::size_t i = 0; i < fds->size(); ++i) {
      Status s = server.addListener((*fds)[i], settings.listen[i].toString());
      if (!s) {
        return startupFailure(s.message(), fg);
      }
    }
    MetricsRegistry& metrics = daemonMetrics();
    server.setMetrics(&metrics, daemonSectionName(service.section()));
    logInfo("connection limits: " + std::to_string(server.caps().total) + " connections (" +
            std::to_string(server.caps().reserved) + " reserved for root/postfix" +
            (settings.allowedUsers ? std::string("/allowed_users") : std::string()) + "), " +
            std::to_string(server.caps().perUser) + " per other local user, " +
            std::to_string(server.caps().perAddress) + " per remote address; open-file limit " +
            std::to_string(fileLimit));
    warnUncheckableAllowedUsers(settings);
    std::unique_ptr<MetricsHttpServer> http;
    if (settings.metricsListen) {
      auto created = MetricsHttpServer::create(base, *settings.metricsListen, &metrics,
                                               [&service] { return service.health(); });
      if (!created) {
        return startupFailure(created.status().message(), fg);
      }
      http = std::move(*created);
      http->countInto(&metrics);
    }
    Status dropped = dropPrivileges(settings.user);
    if (!dropped) {
      return startupFailure(dropped.message(), fg);
    }
    Status started = service.start(base, &metrics);
    if (!started) {
      return startupFailure(started.message(), fg);
    }

    LoopContext ctx;
    ctx.configPath = options->configPath;
    ctx.service = &service;
    ctx.base = base;
    ctx.running = settings;
    auto& reloads = metrics.counter("relaykit_config_reloads_total",
                                    "Configuration reloads (SIGHUP) by result", {"result"});
    ctx.reloadsOk = &reloads.labels({"ok"});
    ctx.reloadsRefused = &reloads.labels({"refused"});
    ctx.lastReloadOk = &metrics
                            .gauge("relaykit_config_last_reload_successful",
                                   "1 when the last configuration reload was accepted")
                            .get();
    ctx.lastReloadOk->set(1);

    if (pipe2(ctx.doneFds, O_CLOEXEC | O_NONBLOCK) != 0) {
      return startupFailure(std::string("cannot create the reload pipe: ") + std::strerror(errno),
                            fg);
    }
    event* reloadDone =
        event_new(base, ctx.doneFds[0], EV_READ | EV_PERSIST, &onReloadCompiled, &ctx);
    event_add(reloadDone, nullptr);
    event* watchTimer = event_new(base, -1, EV_PERSIST, &onWatchTimer, &ctx);
    const timeval watchInterval{kWatchIntervalSeconds, 0};
    event_add(watchTimer, &watchInterval);
    event* hup = evsignal_new(base, SIGHUP, &onReload, &ctx);
    event* term = evsignal_new(base, SIGTERM, &onStop, &ctx);
    event* intr = evsignal_new(base, SIGINT, &onStop, &ctx);
    evsignal_add(hup, nullptr);
    evsignal_add(term, nullptr);
    evsignal_add(intr, nullptr);

    std::string ready = "ready: listening on " + listening;
    if (http) {
      ready += "; metrics on port " + std::to_string(http->port());
    }
    logInfo(ready);
    notifyServiceManager("READY=1\nSTATUS=" + ready);
    if (event_base_dispatch(base) < 0) {
      logError("event loop failed");
      result = 1;
    }
    if (ctx.worker.joinable()) {
      logInfo("waiting for the configuration reload in progress to finish");
      ctx.worker.join();
    }
    event_free(reloadDone);
    event_free(watchTimer);
    close(ctx.doneFds[0]);
    close(ctx.doneFds[1]);
    notifyServiceManager("STOPPING=1");
    service.stop();
    server.shutdown();
    for (const auto& ep : settings.listen) {
      if (ep.kind == Endpoint::Kind::kUnix) {
        unlink(ep.path.c_str());  // best effort: a stale socket is also replaced at start-up
      }
    }
    http.reset();
    event_free(hup);
    event_free(term);
    event_free(intr);
  }
  event_base_free(base);
  logInfo("stopped");
  return result;
}

}  // namespace relaykit

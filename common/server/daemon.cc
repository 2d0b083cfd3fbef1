// daemon.cc: the shared daemon main (options, load, bind, drop privileges, loop, reload, stop).
// See daemon.h for the sequence and its guarantees. Fatal exits happen only at start-up.
#include "common/server/daemon.h"

#include <event2/event.h>
#include <unistd.h>

#include <csignal>

#include <CLI/CLI.hpp>

#include "common/server/listener.h"
#include "common/server/logging.h"
#include "common/server/privileges.h"
#include "common/server/server.h"

namespace relaykit {

namespace {

constexpr char kVersion[] = "relaykit 0.1.0";

// Start-up failure: logged, and also on stderr when logging goes to syslog, so a failed start is
// visible to whoever started the daemon.
int startupFailure(const std::string& message, bool foreground) {
  logFatal(message);
  if (!foreground) {
    std::fprintf(stderr, "%s\n", message.c_str());
  }
  return 1;
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
         a.user == b.user && a.metricsListen == b.metricsListen;
}

struct LoopContext {
  std::string configPath;
  Service* service = nullptr;
  event_base* base = nullptr;
  DaemonSettings running;  // what was bound at start-up
  Counter* reloadsOk = nullptr;
  Counter* reloadsRefused = nullptr;
  Gauge* lastReloadOk = nullptr;
};

void onReload(evutil_socket_t, short, void* arg) {
  auto* ctx = static_cast<LoopContext*>(arg);
  logInfo("reloading configuration from " + ctx->configPath);
  Diagnostics diags;
  auto config = loadServiceConfig(ctx->configPath, *ctx->service, /*install=*/true, &diags);
  logDiagnostics(diags);
  if (!config) {
    std::size_t errors = 0;
    for (const auto& d : diags.all()) {
      errors += d.severity == Diagnostic::Severity::kError ? 1 : 0;
    }
    logError("reload refused (" + std::to_string(errors) +
             " problem(s) above): still serving the previous configuration");
    ctx->reloadsRefused->inc();
    ctx->lastReloadOk->set(0);
    return;
  }
  if (!sameDaemonSettings(config->daemon(ctx->service->section()), ctx->running)) {
    logWarning(
        "listen, socket, user or metrics_listen settings changed: they take effect at "
        "the next restart");
  }
  ctx->reloadsOk->inc();
  ctx->lastReloadOk->set(1);
  logInfo("configuration reloaded");
}

void onStop(evutil_socket_t sig, short, void* arg) {
  auto* ctx = static_cast<LoopContext*>(arg);
  logInfo(std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
  event_base_loopbreak(ctx->base);
}

}  // namespace

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
  CLI::App app{program + ": relaykit daemon", program};
  app.add_option("-c,--config", options.configPath, "configuration file")->capture_default_str();
  app.add_flag("-f,--foreground", options.foreground, "log to stderr instead of syslog");
  app.add_flag("--check", options.check,
               "validate the configuration, print every problem, exit 0 (valid) or 1");
  app.set_version_flag("--version", kVersion);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exitCode = app.exit(e);
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
    printDiagnostics(diags, stderr);
    return config ? 0 : 1;
  }
  const bool fg = options->foreground;
  initLogging(program, fg);
  std::signal(SIGPIPE, SIG_IGN);

  Diagnostics diags;
  auto config = loadServiceConfig(options->configPath, service, /*install=*/true, &diags);
  logDiagnostics(diags);
  if (!config) {
    if (!fg) {
      printDiagnostics(diags, stderr);
    }
    return startupFailure("configuration " + options->configPath + " refused", fg);
  }
  const DaemonSettings settings = config->daemon(service.section());
  config.reset();

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
    for (std::size_t i = 0; i < fds->size(); ++i) {
      Status s = server.addListener((*fds)[i], settings.listen[i].toString());
      if (!s) {
        return startupFailure(s.message(), fg);
      }
    }
    MetricsRegistry& metrics = daemonMetrics();
    std::unique_ptr<MetricsHttpServer> http;
    if (settings.metricsListen) {
      auto created = MetricsHttpServer::create(base, *settings.metricsListen, &metrics,
                                               [&service] { return service.health(); });
      if (!created) {
        return startupFailure(created.status().message(), fg);
      }
      http = std::move(*created);
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
    if (event_base_dispatch(base) < 0) {
      logError("event loop failed");
      result = 1;
    }
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

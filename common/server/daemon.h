// SPDX-License-Identifier: Apache-2.0
// daemon.h: the shared main of every relaykit daemon (Postfix's skeleton idea: each daemon's
// main.cc is a few lines that hand a Service to runDaemon).
//
// runDaemon():
//  1. parses -c/--config FILE (default /etc/relaykit/relaykit.yaml), -f/--foreground (log to
//     stderr, with sd-daemon "<N>" priority prefixes, instead of syslog facility mail),
//     -v/--verbose (debug logging), --check (print every problem as FILE:LINE:COL: message on
//     stderr, exit 0 when the file is valid, 1 otherwise), --help and --version (stdout, exit 0).
//     Exit codes of every daemon: 0 clean stop, 1 configuration or start-up error (always
//     printed on stderr, also without -f), 2 usage error (message and hint on stderr);
//  2. loads the config and lets the Service compile and install its state (errors: exit 1);
//  3. raises the soft RLIMIT_NOFILE to the hard limit (the connection caps are sized below it,
//     docs/connection-limits.md), binds every `listen` endpoint of the service's section (and
//     metrics_listen), THEN drops privileges to `user`, then calls Service::start, logs
//     "ready: listening on ..." and tells systemd READY=1 (Type=notify units; nothing happens
//     outside systemd); connections are admitted by the section's allowed_users and the
//     skeleton's per-peer limits (server.h);
//  4. runs a libevent loop: SIGHUP reloads OFF the loop (systemd hears RELOADING=1, then
//     READY=1): a worker thread (at nice 10, below the loop thread) runs loadConfig +
//     Service::configure(install=false) (so configure(install=false) must touch nothing the loop
//     uses), then the loop thread installs the result with Service::configure(install=true) on the
//     compiled Config (keep that cheap: a snapshot swap). Requests keep being answered while a
//     large file compiles. A bad file is refused, its problems logged, and the old snapshot keeps
//     serving; a SIGHUP during a reload queues one more; listen/user/metrics changes need a restart
//     and are logged as such; SIGTERM/SIGINT stop cleanly (STOPPING=1, listeners closed and unix
//     sockets removed, Service::stop, connections closed, "stopped" logged, exit 0). Once a second
//     the files of Service::watchedFiles() are stat()ed: one that changed since the installed state
//     read it, and did not change since the previous second, starts the same reload ("PATH changed:
//     reloading"); a refused reload is not retried until the file changes again.
// Snapshot policy: the skeleton only installs snapshots; each Service decides whether a
// connection pins the snapshot it started with or takes the latest per request (socketmapd:
// per request). The building blocks are exposed for daemons that cannot use the event loop
// (the milter runs libmilter's loop): parseDaemonOptions, loadServiceConfig, bindEndpoints.
#pragma once

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/diagnostics.h"
#include "common/server/connection.h"
#include "common/server/connection_limits.h"
#include "common/server/metrics.h"

namespace relaykit {

struct DaemonOptions {
  std::string configPath = kDefaultConfigPath;
  bool foreground = false;
  bool check = false;
  bool verbose = false;
};

// Exit codes shared by every relaykit daemon.
constexpr int kExitOk = 0;
constexpr int kExitConfigError = 1;  // configuration refused or start-up failed
constexpr int kExitUsage = 2;        // bad command line

// The version line of --version: "PROGRAM (relaykit) X.Y.Z".
std::string versionLine(const std::string& program);

// Sends a state ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=...") to the service manager
// when started by systemd with NOTIFY_SOCKET; does nothing otherwise. Never fails the caller.
void notifyServiceManager(const std::string& state);

// Parses the daemon command line. Returns nullopt when the process should exit at once
// (--help, --version, a usage error) with *exitCode set.
std::optional<DaemonOptions> parseDaemonOptions(int argc, char** argv, const std::string& program,
                                                int* exitCode);

// Writes every diagnostic, one "FILE:LINE:COL: message" per line.
void printDiagnostics(const Diagnostics& diags, std::FILE* out);
// Logs every diagnostic (warnings as warnings, errors as errors).
void logDiagnostics(const Diagnostics& diags);

// loadConfig + service.configure(install). Returns the config, nullptr on any error.
std::shared_ptr<const Config> loadServiceConfig(const std::string& path, Service& service,
                                                bool install, Diagnostics* diags);

// Opens a listener for each endpoint of `settings` (socket_mode/socket_owner applied to unix
// ones). On error closes what it opened and returns the error.
StatusOr<std::vector<int>> bindEndpoints(const DaemonSettings& settings);

// The peer policy of a daemon section: root and postfix trusted, plus allowed_users (who are
// then the only users let in, with root). For daemons that build their own Server.
PeerPolicy peerPolicyFor(const DaemonSettings& settings);

// The whole daemon. Returns the process exit code.
int runDaemon(int argc, char** argv, const std::string& program, Service& service);

// The registry runDaemon serves on metrics_listen (also usable without runDaemon).
MetricsRegistry& daemonMetrics();

}  // namespace relaykit

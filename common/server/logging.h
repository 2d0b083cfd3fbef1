// SPDX-License-Identifier: Apache-2.0
// logging.h: Postfix-like log lines for the daemons and the CLI.
//
// To syslog (facility mail, the program name as ident, pid included) or, in the foreground, to
// stderr as "relaykit-socketmapd[1234]: warning: text". Levels follow Postfix's wording: info lines
// carry no prefix, others "warning: ", "error: ", "fatal: ". Thread-safe: each line is one write.
// Logging never fails the caller (a failed write is ignored). Text from clients (addresses,
// HELO names) cannot forge or split lines: control bytes (0x00-0x1f, 0x7f) are logged as '?', as
// Postfix's own logging does; bytes from 0x80 (UTF-8) pass.
// On stderr (the foreground, -f) each line starts with the syslog priority in angle brackets,
// "<4>relaykit-policyd[12]: warning: ...", as sd-daemon(3) describes, so journald (a systemd
// unit's stderr) keeps the level; the prefix is left out when stderr is a terminal.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace relaykit {

enum class LogLevel { kDebug, kInfo, kWarning, kError, kFatal };

// Call once at start-up, before any other thread exists. Until then lines go to stderr with the
// name "relaykit".
void initLogging(std::string program, bool toStderr);
// Lines below this level are dropped (default kInfo).
void setLogLevel(LogLevel level);

void logMessage(LogLevel level, std::string_view text);
// `text` with every control byte replaced by '?' (in *scratch when it had any, else text itself).
std::string_view printableLogText(std::string_view text, std::string* scratch);
inline void logDebug(std::string_view text) {
  logMessage(LogLevel::kDebug, text);
}
inline void logInfo(std::string_view text) {
  logMessage(LogLevel::kInfo, text);
}
inline void logWarning(std::string_view text) {
  logMessage(LogLevel::kWarning, text);
}
inline void logError(std::string_view text) {
  logMessage(LogLevel::kError, text);
}
inline void logFatal(std::string_view text) {
  logMessage(LogLevel::kFatal, text);
}

// A warning that comes in floods (every request fails while a store is down): logged at most
// once per `interval`; the lines held back are counted into the next one logged ("... (N more
// since the last such line)"). Not thread-safe: one thread owns it.
class ThrottledWarning {
 public:
  explicit ThrottledWarning(std::chrono::milliseconds interval) : interval_(interval) {}
  void log(std::string_view line);

 private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_{};
  std::uint64_t suppressed_ = 0;
};

}  // namespace relaykit

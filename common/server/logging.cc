// SPDX-License-Identifier: Apache-2.0
// logging.cc: syslog or stderr sink; see logging.h.
#include "common/server/logging.h"

#include <pthread.h>

#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>
#include <algorithm>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <mutex>

namespace relaykit {

namespace {

// Longest line we log; longer texts are cut (a huge key must not flood syslog).
constexpr std::size_t kMaxLogLineBytes = 4096;

std::mutex gMutex;
std::string gProgram = "relaykit";
bool gToStderr = true;
bool gPriorityPrefix = false;  // "<N>" before each stderr line (sd-daemon style)
std::atomic<int> gMinLevel{static_cast<int>(LogLevel::kInfo)};
// "PROGRAM[PID]: " for stderr lines, built once (no getpid(2) per line); a forked child builds
// its own (forgetPrefix runs in the child).
std::string gPrefix;

void forgetPrefix() {
  gPrefix.clear();
}

const char* prefixOf(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug: ";
    case LogLevel::kInfo:
      return "";
    case LogLevel::kWarning:
      return "warning: ";
    case LogLevel::kError:
      return "error: ";
    case LogLevel::kFatal:
      return "fatal: ";
  }
  return "";
}

int priorityOf(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return LOG_DEBUG;
    case LogLevel::kInfo:
      return LOG_INFO;
    case LogLevel::kWarning:
      return LOG_WARNING;
    case LogLevel::kError:
      return LOG_ERR;
    case LogLevel::kFatal:
      return LOG_CRIT;
  }
  return LOG_INFO;
}

}  // namespace

void initLogging(std::string program, bool toStderr) {
  std::lock_guard<std::mutex> lock(gMutex);
  gProgram = std::move(program);
  gToStderr = toStderr;
  gPriorityPrefix = toStderr && isatty(STDERR_FILENO) == 0;
  gPrefix.clear();
  static std::once_flag atfork;
  std::call_once(atfork, [] { pthread_atfork(nullptr, nullptr, &forgetPrefix); });
  if (!gToStderr) {
    // openlog keeps the pointer: gProgram lives for the whole process and is not changed again.
    openlog(gProgram.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
  }
}

void setLogLevel(LogLevel level) {
  gMinLevel = static_cast<int>(level);
}

namespace {

bool isControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// Whether `text` holds a control byte, eight bytes at a time: a byte below 0x20 or equal to
// 0x7f in a word sets that byte's top bit in the test below (exact for whether any does).
bool hasControl(std::string_view text) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, text.data() + i, 8);
    const std::uint64_t below = (w - kOnes * 0x20) & ~w & kHigh;
    const std::uint64_t del = w ^ (kOnes * 0x7f);
    if ((below | ((del - kOnes) & ~del & kHigh)) != 0) {
      return true;
    }
  }
  return std::any_of(text.begin() + static_cast<std::ptrdiff_t>(i), text.end(), isControl);
}

}  // namespace

std::string_view printableLogText(std::string_view text, std::string* scratch) {
  if (!hasControl(text)) {
    return text;
  }
  scratch->assign(text.data(), text.size());
  std::replace_if(scratch->begin(), scratch->end(), isControl, '?');
  return *scratch;
}

void logMessage(LogLevel level, std::string_view text) {
  if (static_cast<int>(level) < gMinLevel.load()) {
    return;
  }
  if (text.size() > kMaxLogLineBytes) {
    text = text.substr(0, kMaxLogLineBytes);
  }
  std::string printable;
  text = printableLogText(text, &printable);
  std::lock_guard<std::mutex> lock(gMutex);
  if (!gToStderr) {
    syslog(priorityOf(level), "%s%.*s", prefixOf(level), static_cast<int>(text.size()),
           text.data());
    return;
  }
  if (gPrefix.empty()) {
    gPrefix = gProgram + "[" + std::to_string(getpid()) + "]: ";
  }
  // One writev(2): as atomic as one write, without building the line.
  char priority[3] = {'<', static_cast<char>('0' + priorityOf(level)), '>'};  // 2 to 7
  const char* levelPrefix = prefixOf(level);
  char newline = '\n';
  iovec parts[5] = {
      {priority, gPriorityPrefix ? sizeof priority : 0},
      {const_cast<char*>(gPrefix.data()), gPrefix.size()},
      {const_cast<char*>(levelPrefix), std::strlen(levelPrefix)},
      {const_cast<char*>(text.data()), text.size()},
      {&newline, 1},
  };
  ssize_t ignored = writev(STDERR_FILENO, parts, 5);
  (void)ignored;
}

void ThrottledWarning::log(std::string_view line) {
  const auto now = std::chrono::steady_clock::now();
  if (last_ != std::chrono::steady_clock::time_point{} && now - last_ < interval_) {
    ++suppressed_;
    return;
  }
  last_ = now;
  std::string text(line);
  if (suppressed_ > 0) {
    text += " (" + std::to_string(suppressed_) + " more since the last such line)";
    suppressed_ = 0;
  }
  logWarning(text);
}

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// run_program.h: runs one external program (postconf, postqueue for the CLI, sendmail for
// relaykit-policyd's alert mails) the way relaykit may: fork/exec with an argument vector (no
// shell), stdin from /dev/null or from a given text, stdout captured up to a bound, stderr
// captured (first bytes) for messages, and a deadline after which the child is killed (SIGKILL)
// and reaped. Safe to call from any thread (the child only calls async-signal-safe functions);
// it blocks the calling thread until the child is gone. Errors are values; nothing throws.
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace relaykit {

// Most stdout kept from a program (postqueue -j of a very large queue is cut here: the result
// says so and callers treat it as unknown).
inline constexpr std::size_t kMaxProgramOutputBytes = 64 * 1024 * 1024;
// Most stderr kept (for the message of a failure).
inline constexpr std::size_t kMaxProgramStderrBytes = 4096;

struct ProgramResult {
  int exitCode = -1;       // exit status; -1 when killed by a signal
  bool timedOut = false;   // killed at the deadline
  bool cancelled = false;  // killed because the cancel flag was set
  bool truncated = false;  // stdout exceeded kMaxProgramOutputBytes
  std::string out;
  std::string err;
  // "exit 1: first stderr line", "timed out after 5s", "killed by signal 9"
  std::string describeFailure() const;
};

// Runs argv[0] (a path, or a name looked up in PATH then /usr/sbin and /usr/bin) with `argv`.
// `extraEnv` entries ("NAME=value") are added to the environment. `input`, when not null, is
// written to the program's standard input (then closed; a program that exits without reading it
// all is not an error here: its exit status says); otherwise stdin is /dev/null. An error Status
// means the program could not be started at all (not found, fork failed). `cancel`, when not
// null, is looked at every 50 ms: once true, the program is killed (result.cancelled).
StatusOr<ProgramResult> runProgram(const std::vector<std::string>& argv,
                                   std::chrono::milliseconds timeout,
                                   const std::vector<std::string>& extraEnv = {},
                                   const std::string* input = nullptr,
                                   const std::atomic<bool>* cancel = nullptr);

// The Postfix configuration directory as Postfix's own tools find it: `explicitDir` (-C) when
// not empty, else the MAIL_CONFIG environment variable when set and not empty, else /etc/postfix.
std::string postfixConfigDir(const std::string& explicitDir);

}  // namespace relaykit

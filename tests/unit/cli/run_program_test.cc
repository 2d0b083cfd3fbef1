// SPDX-License-Identifier: Apache-2.0
// run_program_test.cc: fork/exec with captured output and a deadline (common/run_program.h), on
// real programs from coreutils.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "common/run_program.h"

namespace relaykit {
namespace {

TEST(RunProgramTest, CapturesOutputAndExitCode) {
  auto r = runProgram({"sh", "-c", "echo out; echo err >&2; exit 3"}, std::chrono::seconds(10));
  ASSERT_TRUE(static_cast<bool>(r)) << r.status().message();
  EXPECT_EQ(r->exitCode, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
  EXPECT_FALSE(r->timedOut);
  EXPECT_EQ(r->describeFailure(), "exit 3: err");
}

TEST(RunProgramTest, NoShellBetween) {
  auto r = runProgram({"echo", "$HOME; rm -rf /"}, std::chrono::seconds(10));
  ASSERT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r->out, "$HOME; rm -rf /\n");
}

TEST(RunProgramTest, InputOnStdinAndSignalsReset) {
  // More than a socket buffer, read while the program writes (no deadlock), and a program that
  // stops reading early gets no SIGPIPE in the caller.
  const std::string input(3 << 20, 'x');
  auto r = runProgram({"sh", "-c", "wc -c"}, std::chrono::seconds(10), {}, &input);
  ASSERT_TRUE(static_cast<bool>(r)) << r.status().message();
  EXPECT_EQ(r->exitCode, 0);
  EXPECT_EQ(r->out, std::to_string(input.size()) + "\n");
  r = runProgram({"sh", "-c", "head -c 10 >/dev/null; exit 4"}, std::chrono::seconds(10), {},
                 &input);
  ASSERT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r->exitCode, 4);
  const std::string empty;
  r = runProgram({"cat"}, std::chrono::seconds(10), {}, &empty);
  ASSERT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r->out, "");
  EXPECT_EQ(r->exitCode, 0);
}

TEST(RunProgramTest, CancelledByTheFlag) {
  std::atomic<bool> cancel{false};
  std::thread setter([&cancel] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel = true;
  });
  const auto start = std::chrono::steady_clock::now();
  auto r = runProgram({"sleep", "30"}, std::chrono::seconds(30), {}, nullptr, &cancel);
  setter.join();
  ASSERT_TRUE(static_cast<bool>(r));
  EXPECT_TRUE(r->cancelled);
  EXPECT_FALSE(r->timedOut);
  EXPECT_EQ(r->describeFailure(), "cancelled");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(RunProgramTest, KilledAtTheDeadline) {
  const auto start = std::chrono::steady_clock::now();
  auto r = runProgram({"sleep", "30"}, std::chrono::milliseconds(300));
  ASSERT_TRUE(static_cast<bool>(r));
  EXPECT_TRUE(r->timedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // A child that closes its output but keeps running is bounded too.
  r = runProgram({"sh", "-c", "exec >/dev/null 2>&1; sleep 30"}, std::chrono::milliseconds(300));
  ASSERT_TRUE(static_cast<bool>(r));
  EXPECT_TRUE(r->timedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(RunProgramTest, MissingProgramIsAnError) {
  auto r = runProgram({"relaykit-no-such-program"}, std::chrono::seconds(1));
  EXPECT_FALSE(static_cast<bool>(r));
}

TEST(RunProgramTest, PostfixConfigDirOrder) {
  setenv("MAIL_CONFIG", "/srv/postfix-out", 1);
  EXPECT_EQ(postfixConfigDir("/etc/postfix-in"), "/etc/postfix-in");
  EXPECT_EQ(postfixConfigDir(""), "/srv/postfix-out");
  unsetenv("MAIL_CONFIG");
  EXPECT_EQ(postfixConfigDir(""), "/etc/postfix");
}

}  // namespace
}  // namespace relaykit

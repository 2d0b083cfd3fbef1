// SPDX-License-Identifier: Apache-2.0
// logging_test.cc: common/server/logging.h: stderr lines with the priority prefix and
// "PROGRAM[PID]: " carrying the pid of the process that writes the line (also in a child forked
// after the first line); ThrottledWarning: one line per interval, the lines held back counted
// into the next one; control bytes logged as '?'.
#include "common/server/logging.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace relaykit {
namespace {

TEST(ThrottledWarningTest, OneLinePerIntervalWithTheCountHeldBack) {
  ThrottledWarning warning(std::chrono::milliseconds(200));
  ::testing::internal::CaptureStderr();
  warning.log("store down");
  warning.log("store down");
  warning.log("store down");
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  warning.log("store still down");
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("warning: store down\n"), std::string::npos) << log;
  EXPECT_NE(log.find("warning: store still down (2 more since the last such line)\n"),
            std::string::npos)
      << log;
  std::size_t lines = 0;
  for (char c : log) {
    lines += c == '\n' ? 1 : 0;
  }
  EXPECT_EQ(lines, 2u) << log;
}

TEST(LoggingTest, StderrLinesCarryTheWritersPid) {
  char path[] = "/tmp/relaykit-logging-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const int saved = dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  ASSERT_GE(dup2(fd, STDERR_FILENO), 0);  // not a terminal: lines get the "<N>" prefix
  initLogging("relaykit-test", true);
  logInfo("parent line");
  logWarning("parent warning");
  const pid_t child = fork();
  if (child == 0) {
    logInfo("child line");
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  logError("parent again");
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fd);
  initLogging("relaykit", true);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  unlink(path);
  const std::string parent = "relaykit-test[" + std::to_string(getpid()) + "]: ";
  const std::string kid = "relaykit-test[" + std::to_string(child) + "]: ";
  EXPECT_EQ(text.str(), "<6>" + parent + "parent line\n<4>" + parent +
                            "warning: parent warning\n<6>" + kid + "child line\n<3>" + parent +
                            "error: parent again\n");
}

TEST(LoggingTest, ControlBytesFromClientsCannotSplitOrForgeLines) {
  std::string scratch;
  EXPECT_EQ(printableLogText("sender=<a@b.example>", &scratch), "sender=<a@b.example>");
  EXPECT_EQ(printableLogText(std::string_view("a\r\nfake: line\0x\x1b[31m\x7f", 21), &scratch),
            "a??fake: line?x?[31m?");
  EXPECT_EQ(printableLogText("caf\xc3\xa9@b.example", &scratch), "caf\xc3\xa9@b.example");

  ::testing::internal::CaptureStderr();
  logInfo(std::string_view("refused: sender=<x\n<3>relaykit: forged>", 39));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("refused: sender=<x?<3>relaykit: forged>\n"), std::string::npos) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
}

TEST(LoggingTest, EveryByteValueAtEveryPositionOfAWord) {
  // The eight-bytes-at-a-time scan: each byte value, at each offset in and after the words, among
  // bytes on both sides of the control range (0x20, 0x7e, 0x80, 0xff).
  std::string scratch;
  for (const char fill : {' ', '~', '\x80', '\xff'}) {
    for (int value = 0; value < 256; ++value) {
      for (std::size_t at = 0; at < 19; ++at) {
        std::string text(19, fill);
        text[at] = static_cast<char>(value);
        std::string expected = text;
        if (value < 0x20 || value == 0x7f) {
          expected[at] = '?';
        }
        ASSERT_EQ(printableLogText(text, &scratch), expected) << value << " at " << at;
      }
    }
  }
}

}  // namespace
}  // namespace relaykit

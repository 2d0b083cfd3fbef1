// SPDX-License-Identifier: Apache-2.0
// logging_test.cc: common/server/logging.h's ThrottledWarning: one line per interval, the lines
// held back counted into the next one.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/server/logging.h"

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

}  // namespace
}  // namespace relaykit

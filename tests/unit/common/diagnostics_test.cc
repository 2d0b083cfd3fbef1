// SPDX-License-Identifier: Apache-2.0
// diagnostics_test.cc: FILE:LINE:COL formatting of configuration problems.
#include "common/diagnostics.h"

#include <gtest/gtest.h>

namespace relaykit {
namespace {

TEST(DiagnosticsTest, FormatsErrorsAndWarnings) {
  Diagnostics d;
  d.error({"relaykit.yaml", 3, 5}, "unknown key \"foo\"");
  d.warning({"relaykit.yaml", 7, 1}, "ignoring ENDIF without matching IF");
  EXPECT_TRUE(d.hasErrors());
  EXPECT_EQ(d.formatAll(),
            "relaykit.yaml:3:5: unknown key \"foo\"\n"
            "relaykit.yaml:7:1: warning: ignoring ENDIF without matching IF\n");
}

TEST(DiagnosticsTest, WarningsAloneAreNotErrors) {
  Diagnostics d;
  d.warning({"f", 1, 1}, "w");
  EXPECT_FALSE(d.hasErrors());
}

}  // namespace
}  // namespace relaykit

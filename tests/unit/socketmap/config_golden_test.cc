// SPDX-License-Identifier: Apache-2.0
// config_golden_test.cc: every tests/golden/config/NAME.yaml loads with exactly the diagnostics of
// NAME.diagnostics (see the README there); a file with errors is refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/config.h"

namespace relaykit {
namespace {

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ConfigGoldenTest, EveryFileMatchesItsDiagnostics) {
  const std::filesystem::path dir =
      std::filesystem::path(RELAYKIT_SOURCE_DIR) / "tests/golden/config";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") {
      continue;
    }
    ++files;
    const std::string name = entry.path().filename().string();
    std::filesystem::path expectedPath = entry.path();
    expectedPath.replace_extension(".diagnostics");
    const std::string expected =
        std::filesystem::exists(expectedPath) ? readFile(expectedPath) : std::string();
    Diagnostics diags;
    auto config = loadConfigText(readFile(entry.path()), name, &diags);
    EXPECT_EQ(diags.formatAll(), expected) << name;
    EXPECT_EQ(config == nullptr, diags.hasErrors()) << name;
  }
  EXPECT_GE(files, 4);
}

}  // namespace
}  // namespace relaykit

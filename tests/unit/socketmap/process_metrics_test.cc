// SPDX-License-Identifier: Apache-2.0
// process_metrics_test.cc: the metrics every daemon exports (relaykit_build_info, process_*):
// /proc parsing on fixed texts, and the rendered families on this very process.
#include <gtest/gtest.h>

#include <unistd.h>

#include <ctime>
#include <string>

#include "common/server/metrics.h"

namespace relaykit {
namespace {

TEST(ProcessMetricsTest, ParsesProcStatAfterTheLastParenthesis) {
  // A command name with a space and a ')' must not shift the fields.
  const std::string text =
      "4242 (we) ird) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 1 0 123456 "
      "10000000 512 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
  auto stat = parseProcStat(text, 100, 4096);
  ASSERT_TRUE(stat.has_value());
  EXPECT_DOUBLE_EQ(stat->cpuSeconds, 4.0);  // (250 + 150) / 100
  EXPECT_DOUBLE_EQ(stat->residentBytes, 512.0 * 4096);
  EXPECT_DOUBLE_EQ(stat->startTicksAfterBoot, 123456);
}

TEST(ProcessMetricsTest, RefusesTruncatedStat) {
  EXPECT_FALSE(parseProcStat("4242 (x) S 1 2 3", 100, 4096).has_value());
  EXPECT_FALSE(parseProcStat("no parenthesis at all", 100, 4096).has_value());
}

TEST(ProcessMetricsTest, ParsesBootTime) {
  EXPECT_EQ(parseBootTime("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"), 1700000000.0);
  EXPECT_FALSE(parseBootTime("cpu 1 2 3\n").has_value());
}

double valueOf(const std::string& text, const std::string& series) {
  auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) {
    return -1;
  }
  return std::stod(text.substr(pos + series.size() + 2));
}

TEST(ProcessMetricsTest, RendersBuildInfoAndThisProcess) {
  MetricsRegistry r;
  registerStandardMetrics(&r, "9.8.7");
  registerStandardMetrics(&r, "9.8.7");  // idempotent
  const std::string text = r.render();
  EXPECT_NE(
      text.find("# TYPE relaykit_build_info gauge\nrelaykit_build_info{version=\"9.8.7\"} 1\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
  EXPECT_GE(valueOf(text, "process_cpu_seconds_total"), 0);
  EXPECT_GT(valueOf(text, "process_resident_memory_bytes"), 1024 * 1024);
  const double fds = valueOf(text, "process_open_fds");
  EXPECT_GE(fds, 3);  // stdin, stdout, stderr at least
  const int extra = dup(0);
  ASSERT_GE(extra, 0);
  EXPECT_EQ(valueOf(r.render(), "process_open_fds"), fds + 1);
  close(extra);
  EXPECT_GE(valueOf(text, "process_max_fds"), fds);
  const double started = valueOf(text, "process_start_time_seconds");
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(started, now + 1);
  EXPECT_GT(started, now - 3600);  // this test process started less than an hour ago
}

TEST(ProcessMetricsTest, VersionIsTheProjectVersion) {
  EXPECT_STRNE(relaykitVersion(), "unknown");
  EXPECT_NE(std::string(relaykitVersion()).find('.'), std::string::npos);
}

}  // namespace
}  // namespace relaykit

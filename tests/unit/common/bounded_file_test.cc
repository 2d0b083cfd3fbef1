// SPDX-License-Identifier: Apache-2.0
// bounded_file_test.cc: readBoundedFile refuses at once what is not a regular file (a FIFO would
// block, /dev/zero never ends), refuses files over the limit, and names the file in every error.
#include "common/bounded_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

namespace relaykit {
namespace {

class BoundedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/relaykit-bounded-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::remove((dir_ + "/fifo").c_str());
    std::remove((dir_ + "/file").c_str());
    rmdir((dir_ + "/sub").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(BoundedFileTest, ReadsARegularFile) {
  std::ofstream(dir_ + "/file") << "hello\n";
  auto text = readBoundedFile(dir_ + "/file", 100);
  ASSERT_TRUE(text.isOk()) << text.status().message();
  EXPECT_EQ(*text, "hello\n");
}

TEST_F(BoundedFileTest, FifoIsRefusedWithoutBlocking) {
  ASSERT_EQ(mkfifo((dir_ + "/fifo").c_str(), 0600), 0);
  const auto started = std::chrono::steady_clock::now();
  auto text = readBoundedFile(dir_ + "/fifo", 100);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
  ASSERT_FALSE(text.isOk());
  EXPECT_EQ(text.status().kind(), ErrorKind::kNotRegularFile);
  EXPECT_EQ(text.status().message(), "cannot read " + dir_ + "/fifo: a FIFO, not a regular file");
}

TEST_F(BoundedFileTest, DirectoryAndDevicesAreRefused) {
  ASSERT_EQ(mkdir((dir_ + "/sub").c_str(), 0700), 0);
  auto dir = readBoundedFile(dir_ + "/sub", 100);
  ASSERT_FALSE(dir.isOk());
  EXPECT_EQ(dir.status().kind(), ErrorKind::kNotRegularFile);
  EXPECT_EQ(dir.status().message(),
            "cannot read " + dir_ + "/sub: a directory, not a regular file");
  auto zero = readBoundedFile("/dev/zero", 100);
  ASSERT_FALSE(zero.isOk());
  EXPECT_EQ(zero.status().message(),
            "cannot read /dev/zero: a character device, not a regular file");
}

TEST_F(BoundedFileTest, OversizedAndMissingFiles) {
  std::ofstream(dir_ + "/file") << std::string(101, 'x');
  auto big = readBoundedFile(dir_ + "/file", 100);
  ASSERT_FALSE(big.isOk());
  EXPECT_EQ(big.status().kind(), ErrorKind::kTooLarge);
  EXPECT_EQ(big.status().message(),
            "cannot read " + dir_ + "/file: 101 bytes, larger than the limit of 100 bytes");
  EXPECT_TRUE(readBoundedFile(dir_ + "/file", 101).isOk());
  auto missing = readBoundedFile(dir_ + "/none", 100, "configuration");
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.status().kind(), ErrorKind::kNotFound);
  EXPECT_EQ(missing.status().message(), "cannot read configuration: No such file or directory");
}

}  // namespace
}  // namespace relaykit

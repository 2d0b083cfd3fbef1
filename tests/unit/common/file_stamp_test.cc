// SPDX-License-Identifier: Apache-2.0
// file_stamp_test.cc: a FileStamp changes when the file is rewritten in place (same size too),
// replaced by rename, or removed, and not when it is only read.
#include "common/file_stamp.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace relaykit {
namespace {

TEST(FileStamp, NoticesEveryKindOfChange) {
  char tmpl[] = "/tmp/file_stamp_test.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/f";
  EXPECT_FALSE(stampFile(path).exists);
  std::ofstream(path) << "one\n";
  const FileStamp first = stampFile(path);
  EXPECT_TRUE(first.exists);
  EXPECT_EQ(first.size, 4);
  std::string text;
  std::ifstream(path) >> text;  // reading changes nothing
  EXPECT_EQ(stampFile(path), first);
  usleep(2000);
  std::ofstream(path) << "two\n";  // same size, rewritten in place
  const FileStamp second = stampFile(path);
  EXPECT_NE(second, first);
  EXPECT_EQ(second.inode, first.inode);
  std::ofstream(path + ".new") << "two\n";
  ASSERT_EQ(std::rename((path + ".new").c_str(), path.c_str()), 0);  // replaced whole
  const FileStamp third = stampFile(path);
  EXPECT_NE(third, second);
  ASSERT_EQ(std::remove(path.c_str()), 0);
  EXPECT_NE(stampFile(path), third);
  EXPECT_FALSE(stampFile(path).exists);
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace relaykit

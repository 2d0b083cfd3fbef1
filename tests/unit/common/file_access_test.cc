// SPDX-License-Identifier: Apache-2.0
// file_access_test.cc: `relaykit check`'s access checks: a daemon user that does not exist, and
// files (or directories above them) that user cannot read, reported where they are named.
#include "common/file_access.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace relaykit {
namespace {

class FileAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/relaykit-access-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
    mkdir((dir_ + "/private").c_str(), 0700);
    std::ofstream(dir_ + "/private/t.txt") << "a b\n";
    std::ofstream(dir_ + "/secret") << "pw x\n";
    chmod((dir_ + "/secret").c_str(), 0600);
    std::ofstream(dir_ + "/open") << "a b\n";
    chmod((dir_ + "/open").c_str(), 0644);
  }
  void TearDown() override {
    for (const char* f : {"/private/t.txt", "/secret", "/open", "/c.yaml"}) {
      std::remove((dir_ + f).c_str());
    }
    rmdir((dir_ + "/private").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(FileAccessTest, ModeOwnerAndGroupBits) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root to own files another user cannot read";
  }
  auto nobody = lookupUser("nobody");
  ASSERT_TRUE(nobody.isOk()) << nobody.status().message();
  EXPECT_TRUE(checkReadable(*nobody, dir_ + "/open").isOk());
  Status secret = checkReadable(*nobody, dir_ + "/secret");
  EXPECT_EQ(secret.kind(), ErrorKind::kPermissionDenied);
  EXPECT_EQ(secret.message(), "user \"nobody\" cannot read " + dir_ + "/secret (root:root 0600)");
  Status hidden = checkReadable(*nobody, dir_ + "/private/t.txt");
  EXPECT_EQ(hidden.message(),
            "user \"nobody\" cannot enter the directory " + dir_ + "/private (root:root 0700)");
  // Group bits: readable through the file's group.
  ASSERT_EQ(chown((dir_ + "/secret").c_str(), 0, nobody->gid), 0);
  ASSERT_EQ(chmod((dir_ + "/secret").c_str(), 0640), 0);
  EXPECT_TRUE(checkReadable(*nobody, dir_ + "/secret").isOk());
  auto root = lookupUser("root");
  ASSERT_TRUE(root.isOk());
  EXPECT_TRUE(checkReadable(*root, dir_ + "/private/t.txt").isOk());
  EXPECT_EQ(lookupUser("no-such-user-relaykit").status().kind(), ErrorKind::kNotFound);
}

TEST_F(FileAccessTest, CheckDaemonAccessReportsWhereFilesAreNamed) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root";
  }
  const std::string path = dir_ + "/c.yaml";
  std::ofstream(path) << "tables:\n  t:\n    sources:\n      - file: texthash:" << dir_
                      << "/secret\nsocketmap:\n  user: nobody\nmilter:\n  user: nosuchuser-rk\n";
  chmod(path.c_str(), 0644);
  Diagnostics diags;
  auto config = loadConfig(path, &diags);
  ASSERT_TRUE(config) << diags.formatAll();
  checkDaemonAccess(*config, DaemonSection::kSocketmap, &diags);
  checkDaemonAccess(*config, DaemonSection::kMilter, &diags);
  checkDaemonAccess(*config, DaemonSection::kPolicy, &diags);
  EXPECT_EQ(diags.formatAll(),
            path + ":4:15: socketmap: user \"nobody\" cannot read " + dir_ +
                "/secret (root:root 0600): the table file is read again at every reload, after "
                "the daemon switched to that user\n" +
                path +
                ":8:9: milter: user \"nosuchuser-rk\" does not exist: the daemon would not "
                "start\n");
}

// DKIM private keys are files the milter reads at every reload: `relaykit check` and
// `relaykit-milter --check` check them like the other named files.
TEST_F(FileAccessTest, DkimKeyFilesAreCheckedForTheMilterUser) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root";
  }
  const std::string path = dir_ + "/c.yaml";
  std::ofstream(path) << "milter:\n  user: nobody\n  dkim:\n    keys:\n      - domain: corp.com\n"
                      << "        selector: s\n        key_file: " << dir_ << "/secret\n";
  chmod(path.c_str(), 0644);
  Diagnostics diags;
  auto config = loadConfig(path, &diags);
  ASSERT_TRUE(config) << diags.formatAll();
  checkDaemonAccess(*config, DaemonSection::kMilter, &diags);
  const std::string text = diags.formatAll();
  EXPECT_NE(text.find(path + ":7:19: milter: user \"nobody\" cannot read " + dir_ +
                      "/secret (root:root 0600)"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace relaykit

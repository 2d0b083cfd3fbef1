// SPDX-License-Identifier: Apache-2.0
// socketmapd_blackbox_test.cc: the real relaykit-socketmapd binary on 127.0.0.1 port 0, spoken to
// in netstrings: answers, unknown maps, malformed and oversized input, pipelining, many concurrent
// connections, SIGHUP with a broken and then a good config, SIGTERM, --check.
// Skipped when the binary has not been built (it lives next to this test's build directory).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/endpoint.h"
#include "common/netstring.h"
#include "common/server/listener.h"

namespace relaykit {
namespace {

std::string binaryPath() {
  char self[4096] = {0};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    return "";
  }
  std::string dir(self, static_cast<std::size_t>(n));
  dir = dir.substr(0, dir.rfind('/'));  // build/tests
  return dir.substr(0, dir.rfind('/')) + "/socketmapd/relaykit-socketmapd";
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string configWith(const std::string& value) {
  return "postfix:\n"
         "  local_domains: [relay.corp.local]\n"
         "  recipient_delimiter: \"+\"\n"
         "tables:\n"
         "  generic:\n"
         "    search: address\n"
         "    sources:\n"
         "      - entries:\n"
         "          root@relay.corp.local: " +
         value +
         "\n"
         "          \"\\\"john doe\\\"@corp.local\": john@corp.com\n"
         "  big:\n"
         "    sources:\n"
         "      - entries:\n"
         "          k: " +
         std::string(100000, 'v') +
         "\n"
         "socketmap:\n"
         "  listen: inet:127.0.0.1:0\n";
}

class Daemon {
 public:
  bool start(const std::string& binary, const std::string& config, const std::string& log) {
    log_ = log;
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      execl(binary.c_str(), binary.c_str(), "-c", config.c_str(), "-f",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    // std::regex is avoided: GCC 12 warns inside it under the sanitizers.
    const std::string marker = "ready: listening on inet:127.0.0.1:";
    for (int i = 0; i < 500; ++i) {
      std::string text = readFile(log);
      auto at = text.find(marker);
      if (at != std::string::npos) {
        port_ = static_cast<std::uint16_t>(std::stoi(text.substr(at + marker.size())));
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  ~Daemon() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  int stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  void signal(int sig) { kill(pid_, sig); }
  int connect() {
    Endpoint ep = *Endpoint::parse("inet:127.0.0.1:1");
    ep.port = port_;
    auto fd = connectTo(ep);
    return fd.isOk() ? *fd : -1;
  }
  std::string log() const { return readFile(log_); }
  // Waits until the log contains `text`.
  bool waitLog(const std::string& text) {
    for (int i = 0; i < 300; ++i) {
      if (log().find(text) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::string log_;
};

// Reads one netstring reply; "" with *closed set when the server closed the connection.
std::string readReply(int fd, bool* closed = nullptr) {
  NetstringDecoder d;
  char buf[65536];
  if (closed != nullptr) {
    *closed = false;
  }
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) {
      return "<timeout>";
    }
    ssize_t n = read(fd, buf, 1);  // byte by byte: never read past one reply
    if (n <= 0) {
      if (closed != nullptr) {
        *closed = true;
      }
      return "";
    }
    d.feed(std::string_view(buf, 1));
    if (d.state() == NetstringDecoder::State::kMessage) {
      return d.takeMessage();
    }
    if (d.state() == NetstringDecoder::State::kError) {
      return "<bad reply>";
    }
  }
}

void sendAll(int fd, const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    ASSERT_GT(n, 0);
    off += static_cast<std::size_t>(n);
  }
}

std::string ask(int fd, const std::string& request) {
  sendAll(fd, encodeNetstring(request));
  return readReply(fd);
}

class SocketmapdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = binaryPath();
    if (access(binary_.c_str(), X_OK) != 0) {
      GTEST_SKIP() << "relaykit-socketmapd not built at " << binary_;
    }
    dir_ = "/tmp/relaykit-smd-test-" + std::to_string(getpid());
    mkdir(dir_.c_str(), 0755);
    config_ = dir_ + "/relaykit.yaml";
    writeFile(config_, configWith("noreply@corp.com"));
  }
  void TearDown() override {
    if (!dir_.empty()) {
      std::string cmd = "rm -rf " + dir_;
      int ignored = system(cmd.c_str());
      (void)ignored;
    }
  }
  std::string binary_, dir_, config_;
};

TEST_F(SocketmapdTest, AnswersAndProtocolErrors) {
  Daemon d;
  ASSERT_TRUE(d.start(binary_, config_, dir_ + "/log")) << d.log();
  int fd = d.connect();
  ASSERT_GE(fd, 0);
  EXPECT_EQ(ask(fd, "generic Root+x@Relay.Corp.Local"), "OK noreply@corp.com");
  EXPECT_EQ(ask(fd, "generic nobody@example.com"), "NOTFOUND ");
  EXPECT_EQ(ask(fd, "generic \"john doe\"@corp.local"), "OK john@corp.com");  // key with spaces
  EXPECT_EQ(ask(fd, "generic "), "NOTFOUND ");                                // empty key
  EXPECT_EQ(ask(fd, "nosuchmap key"), "PERM unknown map nosuchmap");
  EXPECT_EQ(ask(fd, "big k"), "PERM reply too large");
  // Two pipelined requests in one write, then one sent byte by byte.
  sendAll(fd, encodeNetstring("generic root@relay.corp.local") + encodeNetstring("generic x@y"));
  EXPECT_EQ(readReply(fd), "OK noreply@corp.com");
  EXPECT_EQ(readReply(fd), "NOTFOUND ");
  for (char c : encodeNetstring("generic root@relay.corp.local")) {
    sendAll(fd, std::string(1, c));
  }
  EXPECT_EQ(readReply(fd), "OK noreply@corp.com");
  // A request without a space is malformed: the connection is closed.
  sendAll(fd, encodeNetstring("generic"));
  bool closed = false;
  readReply(fd, &closed);
  EXPECT_TRUE(closed);
  close(fd);
  // Bad framing and oversized requests close the connection too.
  for (const std::string bad : {"abc", "100001:", "3:abc;"}) {
    int c = d.connect();
    sendAll(c, bad);
    readReply(c, &closed);
    EXPECT_TRUE(closed) << bad;
    close(c);
  }
  EXPECT_NE(d.log().find("unknown map \"nosuchmap\""), std::string::npos);
  EXPECT_NE(d.log().find("bad request"), std::string::npos);
  EXPECT_EQ(d.stop(), 0);
  EXPECT_NE(d.log().find("stopped"), std::string::npos);
}

TEST_F(SocketmapdTest, ManyConnectionsDoNotStallEachOther) {
  Daemon d;
  ASSERT_TRUE(d.start(binary_, config_, dir_ + "/log")) << d.log();
  constexpr int kConnections = 500;
  std::vector<int> fds;
  for (int i = 0; i < kConnections; ++i) {
    int fd = d.connect();
    ASSERT_GE(fd, 0) << i;
    fds.push_back(fd);
  }
  // One connection sends half a request and stalls; every other one is still answered.
  sendAll(fds[0], "40:generic root@");
  for (int i = 1; i < kConnections; ++i) {
    sendAll(fds[i], encodeNetstring("generic root@relay.corp.local"));
  }
  for (int i = 1; i < kConnections; ++i) {
    ASSERT_EQ(readReply(fds[i]), "OK noreply@corp.com") << i;
  }
  for (int fd : fds) {
    close(fd);
  }
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(SocketmapdTest, ReloadKeepsOldRulesOnABadConfig) {
  Daemon d;
  ASSERT_TRUE(d.start(binary_, config_, dir_ + "/log")) << d.log();
  int fd = d.connect();
  ASSERT_EQ(ask(fd, "generic root@relay.corp.local"), "OK noreply@corp.com");
  writeFile(config_, "tables:\n  generic:\n    sources: [{entries: {a: ~}}]\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(d.waitLog("reload refused")) << d.log();
  EXPECT_NE(d.log().find("relaykit.yaml:3:29: expected a string, got null"), std::string::npos)
      << d.log();
  EXPECT_EQ(ask(fd, "generic root@relay.corp.local"), "OK noreply@corp.com");
  writeFile(config_, configWith("new@corp.com"));
  d.signal(SIGHUP);
  ASSERT_TRUE(d.waitLog("configuration reloaded")) << d.log();
  // The open connection takes the new snapshot with its next request.
  EXPECT_EQ(ask(fd, "generic root@relay.corp.local"), "OK new@corp.com");
  close(fd);
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(SocketmapdTest, CheckPrintsEveryProblem) {
  writeFile(config_, "tables:\n  t:\n    search: nope\n    sources: []\nsocketmap:\n  lisen: x\n");
  std::string cmd = binary_ + " -c " + config_ + " --check 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  int status = pclose(p);
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(out.find(config_ + ":3:13: unknown search \"nope\""), std::string::npos) << out;
  EXPECT_NE(out.find(config_ + ":4:14: expected a non-empty list of sources"), std::string::npos)
      << out;
  EXPECT_NE(out.find(config_ + ":6:3: unknown key \"lisen\" in socketmap"), std::string::npos)
      << out;
  writeFile(config_, configWith("ok@corp.com"));
  EXPECT_EQ(WEXITSTATUS(system((binary_ + " -c " + config_ + " --check").c_str())), 0);
}

}  // namespace
}  // namespace relaykit

namespace relaykit {
namespace {

// Runs `command` through the shell; returns its exit code and fills *out with its stdout.
int run(const std::string& command, std::string* out) {
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) {
    return -1;
  }
  out->clear();
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    out->append(buf, n);
  }
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(SocketmapdTest, CliQueryAnswersAsTheServer) {
  std::string cli = binary_.substr(0, binary_.rfind("/socketmapd/")) + "/cli/relaykit";
  if (access(cli.c_str(), X_OK) != 0) {
    GTEST_SKIP() << "relaykit not built at " << cli;
  }
  const std::string q = cli + " query -c " + config_ + " ";
  std::string out;
  EXPECT_EQ(run(q + "generic Root+x@Relay.Corp.Local", &out), 0);
  EXPECT_EQ(out, "noreply@corp.com\n");
  EXPECT_EQ(run(q + "generic nobody@example.com", &out), 1);
  EXPECT_EQ(out, "");
  EXPECT_EQ(
      run("printf 'root@relay.corp.local\\nx@y\\n\"john doe\"@corp.local\\n' | " + q + "generic -",
          &out),
      1);
  EXPECT_EQ(out,
            "root@relay.corp.local\tnoreply@corp.com\n\"john doe\"@corp.local\tjohn@corp.com\n");
  EXPECT_EQ(run("printf 'root@relay.corp.local\\n' | " + q + "generic -", &out), 0);
  EXPECT_EQ(out, "root@relay.corp.local\tnoreply@corp.com\n");
  EXPECT_EQ(run(q + "nosuchtable k 2>/dev/null", &out), 2);
  EXPECT_EQ(run(q + "big k 2>/dev/null", &out), 2);  // PERM reply too large, as the server says
  EXPECT_EQ(run(cli + " query -c " + dir_ + "/missing.yaml generic k 2>/dev/null", &out), 2);
  EXPECT_EQ(run(cli + " check -c " + config_, &out), 0);
  writeFile(config_, "tables:\n  t: {}\n");
  EXPECT_EQ(run(cli + " check -c " + config_ + " 2>&1", &out), 1);
  EXPECT_EQ(out, config_ + ":2:3: table \"t\" has no sources\n");
}

}  // namespace
}  // namespace relaykit

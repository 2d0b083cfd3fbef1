// SPDX-License-Identifier: Apache-2.0
// server_test.cc: the daemon skeleton in-process: a line-echo Service on a real libevent loop
// (its own thread), checking one-reply sends, close-after-reply, the idle timeout and the
// handler's deadline beside it, the input bound, pause/resume for async replies, and the
// socketmap reply mapping.
#include <gtest/gtest.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/endpoint.h"
#include "common/server/listener.h"
#include "common/server/privileges.h"
#include "common/server/server.h"
#include "common/socketmap_protocol.h"

namespace relaykit {
namespace {

// Lines in, "echo: LINE\n" out; "quit" answers "bye" and closes after the reply; "later" answers
// 50 ms later from a timer (as an async Redis reply would), reading paused meanwhile.
class EchoHandler : public ConnectionHandler {
 public:
  void onData(Connection& conn, InputBuffer& input) override {
    while (true) {
      const std::size_t eol = input.view().find('\n');
      if (eol == std::string_view::npos) {
        return;
      }
      std::string text(input.data(), eol);
      input.consume(eol + 1);
      if (text == "quit") {
        conn.send("bye\n");
        conn.closeAfterWrite();
        return;
      }
      if (text == "later") {
        conn.pauseReading();
        in50ms(conn, [](Connection& c) {
          c.send("later done\n");
          c.resumeReading();
        });
        return;
      }
      if (text == "deadline from a timer") {
        // Set from the loop, outside any request: 150 ms from then.
        in50ms(conn, [](Connection& c) {
          c.setHandlerDeadline(Connection::steadyMs(std::chrono::steady_clock::now() +
                                                    std::chrono::milliseconds(150)));
        });
        continue;
      }
      if (text.rfind("deadline ", 0) == 0) {
        // "deadline N": the handler's deadline N ms from now; onDeadline() answers "deadline".
        const auto at =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(std::stoi(text.substr(9)));
        deadlineRan_ = false;
        conn.setHandlerDeadline(Connection::steadyMs(at));
        conn.send(deadlineRan_ ? "ran inside\n" : "set\n");
        continue;
      }
      conn.send("echo: " + text + "\n");
    }
  }
  // Runs `then` on the connection 50 ms later from a loop timer, if it is still open.
  static void in50ms(Connection& conn, void (*then)(Connection&)) {
    auto* job = new std::pair<std::weak_ptr<Connection>, void (*)(Connection&)>(conn.weak(), then);
    timeval delay{0, 50000};
    event_base_once(
        conn.base(), -1, EV_TIMEOUT,
        [](evutil_socket_t, short, void* arg) {
          auto* j = static_cast<std::pair<std::weak_ptr<Connection>, void (*)(Connection&)>*>(arg);
          if (auto c = j->first.lock(); c && c->isOpen()) {
            j->second(*c);
          }
          delete j;
        },
        job, &delay);
  }
  void onDeadline(Connection& conn) override {
    deadlineRan_ = true;
    conn.send("deadline\n");
  }

 private:
  bool deadlineRan_ = false;
};

class EchoService : public Service {
 public:
  DaemonSection section() const override { return DaemonSection::kPolicy; }
  bool configure(const std::shared_ptr<const Config>&, Diagnostics*, bool) override { return true; }
  ServerLimits limits() const override {
    ServerLimits l;
    l.idleTimeout = std::chrono::seconds(1);
    l.maxInputBytes = 100;
    return l;
  }
  std::unique_ptr<ConnectionHandler> newConnection(Connection& conn) override {
    // accept4(2) gave the socket both flags: no fcntl(2) per connection.
    const int status = fcntl(conn.fd(), F_GETFL);
    const int fdFlags = fcntl(conn.fd(), F_GETFD);
    if (status < 0 || (status & O_NONBLOCK) == 0 || fdFlags < 0 || (fdFlags & FD_CLOEXEC) == 0) {
      ++badFlags;
    }
    ++accepted;
    return std::make_unique<EchoHandler>();
  }
  std::atomic<int> accepted{0};
  std::atomic<int> badFlags{0};
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    evthread_use_pthreads();
    base_ = event_base_new();
    server_ = std::make_unique<Server>(base_, &service_, service_.limits());
    auto fd = openListener(*Endpoint::parse("inet:127.0.0.1:0"));
    ASSERT_TRUE(fd.isOk());
    port_ = localPort(*fd);
    ASSERT_TRUE(server_->addListener(*fd, "test").isOk());
    stop_ = event_new(
        base_, -1, 0,
        [](evutil_socket_t, short, void* arg) {
          event_base_loopbreak(static_cast<event_base*>(arg));
        },
        base_);
    loop_ = std::thread([this] { event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY); });
  }
  void TearDown() override {
    // Activated, not loopbreak'ed: a break before the loop starts would be lost.
    event_active(stop_, EV_READ, 0);
    loop_.join();
    event_free(stop_);
    server_.reset();
    event_base_free(base_);
  }
  int connect() {
    Endpoint ep = *Endpoint::parse("inet:127.0.0.1:1");
    ep.port = port_;
    auto fd = connectTo(ep);
    return fd.isOk() ? *fd : -1;
  }
  // A new connection with `text` written on it; -1 on failure.
  int connectAndWrite(const std::string& text) {
    const int fd = connect();
    if (fd >= 0 && !writeAll(fd, text)) {
      close(fd);
      return -1;
    }
    return fd;
  }
  static bool writeAll(int fd, const std::string& text) {
    return write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  }
  // Everything readable within `ms`, until EOF (sets *eof) or the time runs out.
  static std::string readFor(int fd, int ms, bool* eof) {
    std::string out;
    *eof = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) {
        continue;
      }
      char buf[4096];
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        *eof = true;
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

  EchoService service_;
  event_base* base_ = nullptr;
  event* stop_ = nullptr;
  std::unique_ptr<Server> server_;
  std::thread loop_;
  std::uint16_t port_ = 0;
};

TEST_F(ServerTest, RepliesAndClosesAfterTheReply) {
  int fd = connect();
  ASSERT_GE(fd, 0);
  std::string req = "a\nb\nquit\nignored\n";
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  bool eof = false;
  EXPECT_EQ(readFor(fd, 2000, &eof), "echo: a\necho: b\nbye\n");
  EXPECT_TRUE(eof);
  close(fd);
}

TEST_F(ServerTest, AsyncReplyWithPausedReading) {
  int fd = connect();
  std::string req = "later\nafter\n";
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  bool eof = false;
  EXPECT_EQ(readFor(fd, 300, &eof), "later done\necho: after\n");
  EXPECT_FALSE(eof);
  close(fd);
}

TEST_F(ServerTest, IdleConnectionsAreClosed) {
  int fd = connect();
  bool eof = false;
  readFor(fd, 3000, &eof);
  EXPECT_TRUE(eof);
  close(fd);
}

// The handler's deadline shares the connection's one timer with the idle deadline (1 s here):
// it runs from the loop, not before its time, once; a later one set over an earlier one is the
// one that counts; one set from outside a request (no phase change follows to arm it) re-arms
// the timer when it is earlier than the armed idle deadline; and the idle deadline still closes
// the connection at its time, whether the handler's came first or lies beyond it.
TEST_F(ServerTest, HandlerDeadlineRunsOnceFromTheLoopBesideTheIdleDeadline) {
  const auto start = std::chrono::steady_clock::now();
  const int fd = connectAndWrite("deadline 0\n");
  ASSERT_GE(fd, 0);
  bool eof = false;
  EXPECT_EQ(readFor(fd, 150, &eof), "set\ndeadline\n");  // not inside the request

  const auto second = std::chrono::steady_clock::now();
  ASSERT_TRUE(writeAll(fd, "deadline 100\ndeadline 400\n"));
  std::string got;
  while (got.find("deadline\n") == std::string::npos &&
         std::chrono::steady_clock::now() - second < std::chrono::milliseconds(900)) {
    got += readFor(fd, 20, &eof);
  }
  const auto waited = std::chrono::steady_clock::now() - second;
  EXPECT_EQ(got, "set\nset\ndeadline\n");
  EXPECT_GE(waited, std::chrono::milliseconds(400));  // the later one replaced the earlier one
  EXPECT_LT(waited, std::chrono::milliseconds(900));

  // Beyond the idle timeout: the idle close comes first.
  ASSERT_TRUE(writeAll(fd, "deadline 5000\n"));
  EXPECT_EQ(readFor(fd, 3000, &eof), "set\n");
  EXPECT_TRUE(eof);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(3500));
  close(fd);

  const auto third = std::chrono::steady_clock::now();
  const int timed = connectAndWrite("deadline from a timer\n");
  ASSERT_GE(timed, 0);
  EXPECT_EQ(readFor(timed, 600, &eof), "deadline\n");
  EXPECT_FALSE(eof);
  EXPECT_EQ(readFor(timed, 2500, &eof), "");
  EXPECT_TRUE(eof);
  // Idle: 1 s from the last request.
  EXPECT_GE(std::chrono::steady_clock::now() - third, std::chrono::milliseconds(950));
  close(timed);
}

TEST_F(ServerTest, UnconsumedInputIsBounded) {
  int fd = connect();
  std::string junk(500, 'x');  // no newline: never consumed
  ASSERT_EQ(write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  bool eof = false;
  EXPECT_EQ(readFor(fd, 900, &eof), "");
  EXPECT_TRUE(eof);
  close(fd);
}

// The flat input buffer against a std::string model: random appends (as read(2) fills it) and
// consumes keep the same bytes, and the memory stays within four times the most bytes ever live
// plus two reads.
TEST(InputBufferTest, MatchesAStringUnderRandomReadsAndConsumes) {
  InputBuffer buffer;
  std::string model;
  std::uint32_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) & 0xffff;
  };
  constexpr std::size_t kChunk = 16 * 1024;
  std::size_t moved = 0;
  std::size_t maxLive = 0;
  for (int step = 0; step < 20000; ++step) {
    const std::size_t add = next() % 3000;
    const char* before = buffer.data();
    const std::size_t liveBefore = buffer.size();
    char* tail = buffer.prepare(kChunk);
    if (buffer.data() != before) {
      moved += liveBefore;
    }
    for (std::size_t i = 0; i < add; ++i) {
      tail[i] = static_cast<char>('a' + (step + i) % 26);
      model.push_back(static_cast<char>('a' + (step + i) % 26));
    }
    buffer.commit(add);
    maxLive = buffer.size() > maxLive ? buffer.size() : maxLive;
    const std::size_t take = next() % 4000;
    buffer.consume(take);
    model.erase(0, take < model.size() ? take : model.size());
    ASSERT_EQ(buffer.view(), model) << "step " << step;
    ASSERT_LE(buffer.capacity(), 4 * maxLive + 2 * kChunk);
    if (step % 97 == 0) {
      buffer.consume(buffer.size());
      model.clear();
      buffer.release(64 * 1024);
      ASSERT_LE(buffer.capacity(), 64 * 1024u);
    }
  }
  // Linear: bytes moved to make room stay within a small multiple of the bytes read.
  EXPECT_LT(moved, 20000u * 3000u);
  buffer.consume(buffer.size() + 1);  // more than is buffered: empties it
  EXPECT_TRUE(buffer.empty());
  buffer.consume(1);  // consuming from an empty buffer is a no-op
  EXPECT_TRUE(buffer.empty());
}

TEST(InputBufferTest, KeepsAnIncompleteRequestWhileGrowing) {
  InputBuffer buffer;
  std::string model;
  for (int i = 0; i < 40; ++i) {  // a request dripped in 16 KiB reads, never consumed
    char* tail = buffer.prepare(16 * 1024);
    std::memset(tail, 'x' + i % 3, 16 * 1024);
    buffer.commit(16 * 1024);
    model.append(16 * 1024, static_cast<char>('x' + i % 3));
  }
  EXPECT_EQ(buffer.view(), model);
  buffer.release(64 * 1024);  // not empty: kept
  EXPECT_EQ(buffer.size(), model.size());
  buffer.consume(model.size());
  buffer.release(64 * 1024);
  EXPECT_EQ(buffer.capacity(), 0u);
}

TEST_F(ServerTest, ABurstOfQueuedConnectionsIsServedWhole) {
  // Connected before the loop gets to them: they wait in the listen queue together, and the
  // listener takes one per wake-up; every one is accepted, non-blocking, and answered.
  constexpr int kBurst = 60;
  std::vector<int> fds;
  for (int i = 0; i < kBurst; ++i) {
    int fd = connect();
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "hi\n", 3), 3);
    fds.push_back(fd);
  }
  for (int fd : fds) {
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (got.size() < 9 && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      char buf[64];
      ssize_t n = poll(&p, 1, 20) > 0 ? read(fd, buf, sizeof buf) : -1;
      if (n == 0) {
        break;
      }
      if (n > 0) {
        got.append(buf, static_cast<std::size_t>(n));
      }
    }
    EXPECT_EQ(got, "echo: hi\n");
    close(fd);
  }
  EXPECT_EQ(service_.accepted.load(), kBurst);
  EXPECT_EQ(service_.badFlags.load(), 0);
}

TEST(PrivilegesTest, DropsToAnUnprivilegedUser) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root";
  }
  pid_t pid = fork();
  if (pid == 0) {
    Status s = dropPrivileges("nobody");
    _exit(s.isOk() && getuid() != 0 && geteuid() != 0 && setuid(0) != 0 ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(dropPrivileges("no-such-user-relaykit").isOk());
}

TEST(SocketmapProtocolTest, RequestsSplitAtTheFirstSpace) {
  auto r = parseSocketmapRequest("generic \"a b\"@x");
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->name, "generic");
  EXPECT_EQ(r->key, "\"a b\"@x");
  auto empty = parseSocketmapRequest("generic ");
  ASSERT_TRUE(empty.isOk());
  EXPECT_EQ(empty->key, "");
  EXPECT_FALSE(parseSocketmapRequest("generic").isOk());
  EXPECT_FALSE(parseSocketmapRequest(" key").isOk());
}

TEST(SocketmapProtocolTest, Replies) {
  EXPECT_EQ(formatSocketmapReply(LookupResult::found("x")).reply, "OK x");
  EXPECT_EQ(formatSocketmapReply(LookupResult::notFound()).reply, "NOTFOUND ");
  EXPECT_EQ(formatSocketmapReply(LookupResult::tempError("redis down")).reply, "TEMP redis down");
  EXPECT_EQ(formatSocketmapReply(LookupResult::permError("")).reply, "PERM lookup failed");
  auto empty = formatSocketmapReply(LookupResult::found(""));
  EXPECT_EQ(empty.reply, "PERM empty lookup result");
  EXPECT_TRUE(empty.emptyValue);
  auto big = formatSocketmapReply(LookupResult::found(std::string(kMaxSocketmapReplyBytes, 'v')));
  EXPECT_EQ(big.reply, "PERM reply too large");
  EXPECT_TRUE(big.replyTooLarge);
  auto fits =
      formatSocketmapReply(LookupResult::found(std::string(kMaxSocketmapReplyBytes - 3, 'v')));
  EXPECT_EQ(fits.kind, LookupResult::Kind::kFound);
}

}  // namespace
}  // namespace relaykit

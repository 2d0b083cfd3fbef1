// SPDX-License-Identifier: Apache-2.0
// connection_limits_test.cc: the connection caps arithmetic, admission and eviction choice (pure),
// and the skeleton's enforcement in-process on a real libevent loop: a throwing handler closes
// only its own connection, a byte-dripping client meets the request deadline, a client that
// never reads its replies stops being read and is closed, a full table evicts the oldest idle
// connection, and sock_diag names the uid of a loopback TCP peer.
#include <gtest/gtest.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/endpoint.h"
#include "common/server/connection_limits.h"
#include "common/server/listener.h"
#include "common/server/metrics.h"
#include "common/server/peer_credentials.h"
#include "common/server/server.h"

namespace relaykit {
namespace {

using Action = AdmissionDecision::Action;
using Scope = AdmissionDecision::Scope;

TEST(ConnectionCapsTest, FitUnderTheOpenFileLimit) {
  ConnectionCaps caps = computeConnectionCaps(4096, 256, 64, 256, 1024);
  EXPECT_EQ(caps.total, 1024 - kFdReserve);
  EXPECT_EQ(caps.reserved, 256u);
  EXPECT_EQ(caps.shared(), caps.total - 256);
  EXPECT_EQ(caps.perUser, 64u);

  caps = computeConnectionCaps(4096, 256, 64, 256, 524288);
  EXPECT_EQ(caps.total, 4096u);

  caps = computeConnectionCaps(4096, 256, 64, 256, UINT64_MAX);
  EXPECT_EQ(caps.total, 4096u);
}

TEST(ConnectionCapsTest, TinyLimitsStayUsable) {
  ConnectionCaps caps = computeConnectionCaps(4096, 256, 64, 256, 100);
  EXPECT_EQ(caps.total, kMinConnectionBudget);
  EXPECT_EQ(caps.reserved, kMinConnectionBudget / 2);  // at most half
  EXPECT_LE(caps.perUser, caps.shared());
  EXPECT_GE(caps.perUser, 1u);
  caps = computeConnectionCaps(0, 0, 0, 0, 0);
  EXPECT_EQ(caps.total, kMinConnectionBudget);
  EXPECT_EQ(caps.perUser, 1u);
}

TEST(AdmissionTest, TrustedPeersUseTheReserveThenEvict) {
  ConnectionCaps caps = computeConnectionCaps(100, 20, 10, 30, UINT64_MAX);
  AdmissionCounts counts{90, 80, 0};  // shared part (80) full
  EXPECT_EQ(decideAdmission(counts, true, 0, caps).action, Action::kAdmit);
  counts.total = 100;
  AdmissionDecision d = decideAdmission(counts, true, 0, caps);
  EXPECT_EQ(d.action, Action::kEvict);
  EXPECT_EQ(d.scope, Scope::kAny);
  EXPECT_STREQ(d.reason, "total");
}

TEST(AdmissionTest, UntrustedPeersShareTheRestAndAreCappedPerPeer) {
  ConnectionCaps caps = computeConnectionCaps(100, 20, 10, 30, UINT64_MAX);
  EXPECT_EQ(decideAdmission({50, 40, 9}, false, caps.perUser, caps).action, Action::kAdmit);
  AdmissionDecision d = decideAdmission({50, 40, 10}, false, caps.perUser, caps);
  EXPECT_EQ(d.action, Action::kEvict);
  EXPECT_EQ(d.scope, Scope::kSamePeer);
  EXPECT_STREQ(d.reason, "per_peer");
  // No key (uid unknown): no per-peer cap.
  EXPECT_EQ(decideAdmission({50, 40, 500}, false, 0, caps).action, Action::kAdmit);
  d = decideAdmission({85, 80, 1}, false, caps.perUser, caps);
  EXPECT_EQ(d.action, Action::kEvict);
  EXPECT_EQ(d.scope, Scope::kUntrusted);
  EXPECT_STREQ(d.reason, "shared");
}

EvictionCandidate candidate(std::uint64_t id, bool idle, bool trusted, std::string key,
                            std::int64_t since) {
  EvictionCandidate c;
  c.id = id;
  c.idle = idle;
  c.trusted = trusted;
  c.peerKey = std::move(key);
  c.idleSinceMs = since;
  return c;
}

TEST(EvictionTest, OldestIdleOfTheScope) {
  std::vector<EvictionCandidate> all = {
      candidate(1, true, true, "", 10),        // oldest, trusted
      candidate(2, false, false, "uid:7", 5),  // busy: never
      candidate(3, true, false, "uid:7", 30), candidate(4, true, false, "uid:8", 20),
      candidate(5, true, true, "", 15),
  };
  EXPECT_EQ(chooseEviction(all, Scope::kAny, ""), 4u);  // untrusted before trusted
  EXPECT_EQ(chooseEviction(all, Scope::kUntrusted, ""), 4u);
  EXPECT_EQ(chooseEviction(all, Scope::kSamePeer, "uid:7"), 3u);
  EXPECT_EQ(chooseEviction(all, Scope::kSamePeer, "uid:9"), std::nullopt);
  EXPECT_EQ(chooseEviction(all, Scope::kSamePeer, ""), std::nullopt);
  std::vector<EvictionCandidate> trustedOnly = {candidate(1, true, true, "", 10),
                                                candidate(5, true, true, "", 5)};
  EXPECT_EQ(chooseEviction(trustedOnly, Scope::kAny, ""), 5u);
  EXPECT_EQ(chooseEviction(trustedOnly, Scope::kUntrusted, ""), std::nullopt);
  EXPECT_EQ(chooseEviction({}, Scope::kAny, ""), std::nullopt);
}

TEST(EvictionTest, IdleSinceTheSameMillisecondTheFirstAcceptedGoes) {
  // The server's table keeps no order: the lowest id wins a tie wherever it stands.
  std::vector<EvictionCandidate> tied = {candidate(9, true, false, "uid:7", 10),
                                         candidate(4, true, false, "uid:7", 10),
                                         candidate(6, true, false, "uid:7", 10)};
  EXPECT_EQ(chooseEviction(tied, Scope::kAny, ""), 4u);
  EXPECT_EQ(chooseEviction(tied, Scope::kSamePeer, "uid:7"), 4u);
  std::reverse(tied.begin(), tied.end());
  EXPECT_EQ(chooseEviction(tied, Scope::kUntrusted, ""), 4u);
}

TEST(PeerPolicyTest, RootIsAlwaysTrustedAndAllowed) {
  PeerPolicy policy;
  policy.trustedUids = {100};
  EXPECT_TRUE(policy.isTrusted(PeerIdentity::user(0)));
  EXPECT_TRUE(policy.isTrusted(PeerIdentity::user(100)));
  EXPECT_FALSE(policy.isTrusted(PeerIdentity::user(65534)));
  EXPECT_FALSE(policy.isTrusted(PeerIdentity::unknown()));
  EXPECT_FALSE(policy.isTrusted(PeerIdentity::remote("192.0.2.1")));
  EXPECT_TRUE(policy.isAllowed(PeerIdentity::remote("192.0.2.1")));
  policy.allowedUids = std::vector<uid_t>{100};
  EXPECT_TRUE(policy.isAllowed(PeerIdentity::user(0)));
  EXPECT_TRUE(policy.isAllowed(PeerIdentity::user(100)));
  EXPECT_FALSE(policy.isAllowed(PeerIdentity::user(65534)));
  EXPECT_FALSE(policy.isAllowed(PeerIdentity::unknown()));
  EXPECT_FALSE(policy.isAllowed(PeerIdentity::remote("192.0.2.1")));
  EXPECT_EQ(PeerIdentity::user(7).key(), "uid:7");
  EXPECT_EQ(PeerIdentity::remote("::2").key(), "addr:::2");
  EXPECT_EQ(PeerIdentity::unknown().key(), "");
}

// ---- the skeleton, in-process ----

// Lines in. "throw" throws from onData; "big" answers kBigReply bytes; anything else "ok\n".
constexpr std::size_t kBigReply = 64 * 1024;

class TestHandler : public ConnectionHandler {
 public:
  explicit TestHandler(std::atomic<int>* served) : served_(served) {}
  void onData(Connection& conn, InputBuffer& input) override {
    while (conn.isOpen() && !conn.outputBlocked()) {
      const std::size_t eol = input.view().find('\n');
      if (eol == std::string_view::npos) {
        return;
      }
      std::string text(input.data(), eol);
      input.consume(eol + 1);
      ++*served_;
      if (text == "throw") {
        throw std::runtime_error("boom");
      }
      conn.send(text == "big" ? std::string(kBigReply, 'b') : std::string("ok\n"));
    }
  }

 private:
  std::atomic<int>* served_;
};

class TestService : public Service {
 public:
  DaemonSection section() const override { return DaemonSection::kSocketmap; }
  bool configure(const std::shared_ptr<const Config>&, Diagnostics*, bool) override { return true; }
  ServerLimits limits() const override { return limits_; }
  std::unique_ptr<ConnectionHandler> newConnection(Connection&) override {
    return std::make_unique<TestHandler>(&served_);
  }
  ServerLimits limits_;
  std::atomic<int> served_{0};
};

class SkeletonTest : public ::testing::Test {
 protected:
  void start(ServerLimits limits) {
    service_.limits_ = limits;
    evthread_use_pthreads();
    base_ = event_base_new();
    server_ = std::make_unique<Server>(base_, &service_, service_.limits());
    server_->setMetrics(&registry_, "test");
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
    if (base_ == nullptr) {
      return;
    }
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
  static void writeAll(int fd, const std::string& s) {
    ASSERT_EQ(write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  // Everything readable within `ms`, until EOF (sets *eof), the time runs out, or (with
  // `untilLine`) a reply ending in a newline arrived.
  static std::string readFor(int fd, int ms, bool* eof, bool untilLine = false) {
    std::string out;
    *eof = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) {
        continue;
      }
      char buf[65536];
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        *eof = true;
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
      if (untilLine && !out.empty() && out.back() == '\n') {
        break;
      }
    }
    return out;
  }
  std::string metrics() const { return registry_.render(); }

  TestService service_;
  MetricsRegistry registry_;
  event_base* base_ = nullptr;
  event* stop_ = nullptr;
  std::unique_ptr<Server> server_;
  std::thread loop_;
  std::uint16_t port_ = 0;
};

TEST_F(SkeletonTest, AThrowingHandlerClosesOnlyItsConnection) {
  start(ServerLimits());
  int other = connect();
  int bad = connect();
  ASSERT_GE(other, 0);
  ASSERT_GE(bad, 0);
  writeAll(bad, "throw\n");
  bool eof = false;
  EXPECT_EQ(readFor(bad, 2000, &eof), "");
  EXPECT_TRUE(eof);
  writeAll(other, "hello\n");
  EXPECT_EQ(readFor(other, 300, &eof), "ok\n");
  EXPECT_FALSE(eof);
  EXPECT_NE(
      metrics().find("relaykit_connection_errors_total{server=\"test\",reason=\"exception\"} 1"),
      std::string::npos)
      << metrics();
  close(bad);
  close(other);
}

TEST_F(SkeletonTest, ADrippingClientMeetsTheRequestDeadline) {
  ServerLimits limits;
  limits.idleTimeout = std::chrono::seconds(3);
  limits.requestTimeout = std::chrono::seconds(1);
  start(limits);
  int fd = connect();
  ASSERT_GE(fd, 0);
  bool eof = false;
  const auto started = std::chrono::steady_clock::now();
  // One byte every 200 ms of a line that never ends: each byte used to restart the idle timer.
  for (int i = 0; i < 20 && !eof; ++i) {
    if (write(fd, "x", 1) != 1) {
      eof = true;
      break;
    }
    readFor(fd, 200, &eof);
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(eof);
  EXPECT_LT(elapsed, std::chrono::milliseconds(2500));
  EXPECT_NE(metrics().find("reason=\"request_timeout\"} 1"), std::string::npos) << metrics();
  close(fd);
}

TEST_F(SkeletonTest, CompleteRequestsKeepAConnectionAlive) {
  ServerLimits limits;
  limits.idleTimeout = std::chrono::seconds(2);
  limits.requestTimeout = std::chrono::seconds(1);
  start(limits);
  int fd = connect();
  bool eof = false;
  for (int i = 0; i < 4; ++i) {  // 4 x 600 ms: longer than both timeouts in total
    writeAll(fd, "a\n");
    EXPECT_EQ(readFor(fd, 600, &eof), "ok\n");
    ASSERT_FALSE(eof);
  }
  close(fd);
}

// A request answered within one readable event leaves the deadline timer alone; the idle
// deadline armed at connect fires early and is re-armed for the rest: the idle clock still
// restarts at the end of each request.
TEST_F(SkeletonTest, TheIdleClockRestartsAfterEachRequest) {
  ServerLimits limits;
  limits.idleTimeout = std::chrono::seconds(2);
  limits.requestTimeout = std::chrono::seconds(1);
  start(limits);
  int fd = connect();
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  bool eof = false;
  writeAll(fd, "a\n");
  EXPECT_EQ(readFor(fd, 300, &eof, true), "ok\n");
  ASSERT_FALSE(eof);
  // Past the deadline armed at connect (2 s), 1.5 s after the request: still open.
  EXPECT_EQ(readFor(fd, 1300, &eof), "");
  EXPECT_FALSE(eof) << "closed before idleTimeout had passed since the last request";
  // 2 s after the request: closed as idle.
  readFor(fd, 2500, &eof);
  EXPECT_TRUE(eof);
  EXPECT_NE(metrics().find("reason=\"idle_timeout\"} 1"), std::string::npos) << metrics();
  close(fd);
}

TEST_F(SkeletonTest, AClientThatDoesNotReadStopsBeingReadAndIsClosed) {
  ServerLimits limits;
  limits.writeTimeout = std::chrono::seconds(1);
  start(limits);
  int fd = connect();
  ASSERT_GE(fd, 0);
  // 2,000 requests for 64 KiB each (125 MB of replies) and never read.
  std::string requests;
  for (int i = 0; i < 2000; ++i) {
    requests += "big\n";
  }
  writeAll(fd, requests);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  // The kernel's socket buffers take a few MB; the server queues at most maxOutputBytes more.
  const int served = service_.served_.load();
  EXPECT_LT(served, 400) << "replies generated for a client that reads nothing";
  bool eof = false;
  std::string got = readFor(fd, 2000, &eof);
  EXPECT_TRUE(eof);
  EXPECT_LE(got.size(), static_cast<std::size_t>(served) * kBigReply);
  EXPECT_NE(metrics().find("reason=\"write_timeout\"} 1"), std::string::npos) << metrics();
  close(fd);
}

TEST_F(SkeletonTest, AFullTableEvictsTheOldestIdleConnection) {
  ServerLimits limits;
  limits.maxConnections = kMinConnectionBudget;
  start(limits);
  std::vector<int> fds;
  for (std::size_t i = 0; i < kMinConnectionBudget; ++i) {
    fds.push_back(connect());
    ASSERT_GE(fds.back(), 0);
    bool eof = false;
    writeAll(fds.back(), "a\n");
    ASSERT_EQ(readFor(fds.back(), 500, &eof, true), "ok\n");  // admitted and served
  }
  int late = connect();
  writeAll(late, "late\n");
  bool eof = false;
  EXPECT_EQ(readFor(late, 1000, &eof, true), "ok\n");
  EXPECT_FALSE(eof);
  readFor(fds.front(), 500, &eof);
  EXPECT_TRUE(eof) << "the oldest idle connection was not evicted";
  writeAll(fds.back(), "b\n");
  EXPECT_EQ(readFor(fds.back(), 500, &eof), "ok\n");
  EXPECT_NE(
      metrics().find("relaykit_connections_evicted_total{server=\"test\",reason=\"total\"} 1"),
      std::string::npos)
      << metrics();
  for (int fd : fds) {
    close(fd);
  }
  close(late);
}

TEST(PeerResolverTest, NamesTheUidOfALoopbackTcpPeer) {
  auto listenFd = openListener(*Endpoint::parse("inet:127.0.0.1:0"));
  ASSERT_TRUE(listenFd.isOk());
  Endpoint ep = *Endpoint::parse("inet:127.0.0.1:1");
  ep.port = localPort(*listenFd);
  auto client = connectTo(ep);
  ASSERT_TRUE(client.isOk());
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  int accepted = -1;
  for (int i = 0; i < 100 && accepted < 0; ++i) {
    accepted = accept(*listenFd, reinterpret_cast<sockaddr*>(&peer), &len);
    if (accepted < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ASSERT_GE(accepted, 0);
  PeerResolver resolver;
  PeerIdentity id = resolver.resolve(accepted, reinterpret_cast<sockaddr*>(&peer), len);
  EXPECT_EQ(id.kind, PeerIdentity::Kind::kUser) << id.describe();
  EXPECT_EQ(id.uid, getuid());
  // The listener's own address given for the accepted socket's (a listener bound to one address):
  // the same answer without getsockname(2); a wrong one is what the lookup then asks about.
  sockaddr_storage local{};
  socklen_t localLen = sizeof local;
  ASSERT_EQ(getsockname(*listenFd, reinterpret_cast<sockaddr*>(&local), &localLen), 0);
  id = resolver.resolve(accepted, reinterpret_cast<sockaddr*>(&peer), len, &local);
  EXPECT_EQ(id.kind, PeerIdentity::Kind::kUser) << id.describe();
  EXPECT_EQ(id.uid, getuid());
  reinterpret_cast<sockaddr_in*>(&local)->sin_port = htons(1);
  id = resolver.resolve(accepted, reinterpret_cast<sockaddr*>(&peer), len, &local);
  EXPECT_EQ(id.kind, PeerIdentity::Kind::kUnknown) << id.describe();
  close(accepted);
  close(*client);
  close(*listenFd);
}

TEST(PeerResolverTest, LoopbackAddresses) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(0x7f000102);
  EXPECT_TRUE(isLoopbackAddress(reinterpret_cast<sockaddr*>(&in)));
  in.sin_addr.s_addr = htonl(0xc0000201);
  EXPECT_FALSE(isLoopbackAddress(reinterpret_cast<sockaddr*>(&in)));
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_addr = in6addr_loopback;
  EXPECT_TRUE(isLoopbackAddress(reinterpret_cast<sockaddr*>(&in6)));
  in6.sin6_addr = in6addr_any;
  in6.sin6_addr.s6_addr[10] = 0xff;
  in6.sin6_addr.s6_addr[11] = 0xff;
  in6.sin6_addr.s6_addr[12] = 127;
  EXPECT_TRUE(isLoopbackAddress(reinterpret_cast<sockaddr*>(&in6)));
}

}  // namespace
}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// netstring_echo.cc: the floor for socketmap and policy benchmarks. A single-threaded epoll server
// that answers every netstring request with a fixed reply ("NOTFOUND " by default, or -r TEXT)
// and does no other work: what a socketmap round trip costs on this machine's loopback. With -P
// it speaks the policy protocol instead (a request ends with an empty line; the reply is
// "action=DUNNO"): the floor for bench/policyd. With -P -R REDIS_PORT each policy request first
// makes one round trip to a Redis server (PING, on one shared connection, pipelined), and its
// reply goes out when the PONG comes back: the floor of a Redis-backed policy server.
// With -s FILE, SIGUSR1 makes it write "SEQ REQUESTS\n" to FILE (SEQ counts the signals, REQUESTS
// the requests answered so far): how a benchmark counts the floor's requests without asking it
// over the wire.
//   netstring_echo -p PORT [-r REPLY] [-P [-R REDIS_PORT]] [-s FILE]
//   (127.0.0.1 only; until SIGTERM/INT)
// Requests over 10000 bytes or malformed ones close the connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <unordered_map>

namespace {

constexpr std::size_t kMaxRequest = 10000;
constexpr int kMaxEvents = 256;

volatile std::sig_atomic_t stopping = 0;
volatile std::sig_atomic_t reportWanted = 0;
void onSignal(int) {
  stopping = 1;
}
void onReport(int) {
  reportWanted = 1;
}

// Writes "SEQ REQUESTS\n" to `path` (through a temporary file and rename: a reader never sees
// half a line).
void writeReport(const std::string& path, unsigned long seq, unsigned long long requests) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return;
  }
  std::fprintf(f, "%lu %llu\n", seq, requests);
  std::fclose(f);
  std::rename(tmp.c_str(), path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  std::string replyText = "NOTFOUND ";
  bool policy = false;
  int opt;
  int redisPort = 0;
  std::string reportPath;
  while ((opt = getopt(argc, argv, "p:r:PR:s:")) != -1) {
    if (opt == 's') {
      reportPath = optarg;
    } else if (opt == 'R') {
      redisPort = std::atoi(optarg);
    } else if (opt == 'p') {
      port = std::atoi(optarg);
    } else if (opt == 'r') {
      replyText = optarg;
    } else if (opt == 'P') {
      policy = true;
    } else {
      std::fprintf(stderr,
                   "usage: netstring_echo -p PORT [-r REPLY] [-P [-R REDIS_PORT]] [-s FILE]\n");
      return 2;
    }
  }
  const std::string reply = policy ? std::string("action=DUNNO\n\n")
                                   : std::to_string(replyText.size()) + ":" + replyText + ",";
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  std::signal(SIGPIPE, SIG_IGN);
  {
    struct sigaction sa {};
    sa.sa_handler = onReport;  // no SA_RESTART: epoll_wait returns EINTR and the report goes out
    sigaction(SIGUSR1, &sa, nullptr);
  }
  unsigned long reportSeq = 0;
  unsigned long long requests = 0;
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(lfd, 1024) != 0) {
    std::perror("netstring_echo: bind/listen");
    return 1;
  }
  int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  // -R: the Redis connection, and the clients waiting for a PONG, oldest first (fd and the
  // connection's serial number, so a reply never goes to a later connection on the same fd).
  int redisFd = -1;
  std::string redisIn;
  std::deque<std::pair<int, std::uint64_t>> waiting;
  std::unordered_map<int, std::uint64_t> serials;
  std::uint64_t nextSerial = 1;
  if (redisPort > 0) {
    redisFd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in ra{};
    ra.sin_family = AF_INET;
    ra.sin_port = htons(static_cast<uint16_t>(redisPort));
    ra.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(redisFd, reinterpret_cast<sockaddr*>(&ra), sizeof ra) != 0) {
      std::perror("netstring_echo: connect to redis");
      return 1;
    }
    setsockopt(redisFd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    epoll_event rev{};
    rev.events = EPOLLIN;
    rev.data.fd = redisFd;
    epoll_ctl(ep, EPOLL_CTL_ADD, redisFd, &rev);
  }
  std::unordered_map<int, std::string> buffers;
  epoll_event events[kMaxEvents];
  char chunk[16384];
  while (!stopping) {
    int n = epoll_wait(ep, events, kMaxEvents, 200);
    if (reportWanted) {
      reportWanted = 0;
      if (!reportPath.empty()) {
        writeReport(reportPath, ++reportSeq, requests);
      }
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        int c = accept(lfd, nullptr, nullptr);
        if (c >= 0) {
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          buffers[c];
          serials[c] = nextSerial++;
        }
        continue;
      }
      if (fd == redisFd) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r <= 0) {
          std::fprintf(stderr, "netstring_echo: redis connection lost\n");
          return 1;
        }
        redisIn.append(chunk, static_cast<std::size_t>(r));
        std::size_t done = 0;
        while (redisIn.size() - done >= 7 && !waiting.empty()) {  // "+PONG\r\n"
          done += 7;
          auto [client, serial] = waiting.front();
          waiting.pop_front();
          auto it = serials.find(client);
          if (it != serials.end() && it->second == serial) {
            (void)!write(client, reply.data(), reply.size());
          }
        }
        redisIn.erase(0, done);
        continue;
      }
      ssize_t r = read(fd, chunk, sizeof chunk);
      bool closeIt = r <= 0;
      std::string& buf = buffers[fd];
      if (!closeIt) {
        buf.append(chunk, static_cast<std::size_t>(r));
      }
      std::string out;
      while (!closeIt && policy) {
        std::size_t end = buf.find("\n\n");
        if (end == std::string::npos) {
          closeIt = buf.size() > kMaxRequest;
          break;
        }
        buf.erase(0, end + 2);
        ++requests;
        if (redisFd >= 0) {
          waiting.emplace_back(fd, serials[fd]);
          out += "PING\r\n";
        } else {
          out += reply;
        }
      }
      while (!closeIt && !policy) {
        std::size_t colon = buf.find(':');
        if (colon == std::string::npos) {
          closeIt = buf.size() > 6;
          break;
        }
        std::size_t len = std::strtoul(buf.c_str(), nullptr, 10);
        if (colon == 0 || len > kMaxRequest) {
          closeIt = true;
          break;
        }
        if (buf.size() < colon + len + 2) {
          break;
        }
        if (buf[colon + 1 + len] != ',') {
          closeIt = true;
          break;
        }
        buf.erase(0, colon + len + 2);
        ++requests;
        out += reply;
      }
      if (!out.empty() && policy && redisFd >= 0) {
        if (write(redisFd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
          std::fprintf(stderr, "netstring_echo: write to redis failed\n");
          return 1;
        }
      } else if (!out.empty() &&
                 write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
        closeIt = true;
      }
      if (closeIt) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        buffers.erase(fd);
        serials.erase(fd);
      }
    }
  }
  close(lfd);
  return 0;
}

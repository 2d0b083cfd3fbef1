// netstring_echo.cc: the floor for socketmap and policy benchmarks. A single-threaded epoll server
// that answers every netstring request with a fixed reply ("NOTFOUND " by default, or -r TEXT)
// and does no other work: what a socketmap round trip costs on this machine's loopback. With -P
// it speaks the policy protocol instead (a request ends with an empty line; the reply is
// "action=DUNNO"): the floor for bench/policyd.
//   netstring_echo -p PORT [-r REPLY] [-P]     (127.0.0.1 only; runs until SIGTERM/SIGINT)
// Requests over 10000 bytes or malformed ones close the connection.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

namespace {

constexpr std::size_t kMaxRequest = 10000;
constexpr int kMaxEvents = 256;

volatile std::sig_atomic_t stopping = 0;
void onSignal(int) {
  stopping = 1;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  std::string replyText = "NOTFOUND ";
  bool policy = false;
  int opt;
  while ((opt = getopt(argc, argv, "p:r:P")) != -1) {
    if (opt == 'p') {
      port = std::atoi(optarg);
    } else if (opt == 'r') {
      replyText = optarg;
    } else if (opt == 'P') {
      policy = true;
    } else {
      std::fprintf(stderr, "usage: netstring_echo -p PORT [-r REPLY] [-P]\n");
      return 2;
    }
  }
  const std::string reply = policy ? std::string("action=DUNNO\n\n")
                                   : std::to_string(replyText.size()) + ":" + replyText + ",";
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  std::signal(SIGPIPE, SIG_IGN);
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
  std::unordered_map<int, std::string> buffers;
  epoll_event events[kMaxEvents];
  char chunk[16384];
  while (!stopping) {
    int n = epoll_wait(ep, events, kMaxEvents, 200);
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
        }
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
        out += reply;
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
        out += reply;
      }
      if (!out.empty() && write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
        closeIt = true;
      }
      if (closeIt) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        buffers.erase(fd);
      }
    }
  }
  close(lfd);
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// milter_floor.cc: the floor for bench/milter. A single-threaded epoll milter that negotiates the
// same steps as relaykit-milter with the seed rules (no CONNECT/HELO/RCPT/DATA/EOH/body events,
// every no-reply flag, the same macro lists), and at end of message answers at once with the
// edits relaykit makes to the benchmark's messages (a new envelope sender and From header)
// and CONTINUE, in one write. It parses nothing and decides nothing: what Postfix's own side of
// the milter protocol costs per message on this machine, with a milter that costs nothing. No
// milter can make Postfix faster than this one does.
//   milter_floor [-e] -u PATH | -p PORT  (a unix socket, or 127.0.0.1:PORT with TCP_NODELAY and
//                                        TCP_QUICKACK after every read; runs until SIGTERM/SIGINT)
// With -e the same work runs on libevent (one persistent read event per connection, as
// relaykit's daemons use it) instead of a bare epoll loop: what the event library costs.
// Packets over 1 MiB or malformed ones close the connection.
#include <arpa/inet.h>
#include <event2/event.h>
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

namespace {

constexpr std::uint32_t kMaxPacket = 1 << 20;
constexpr int kMaxEvents = 256;

volatile std::sig_atomic_t stopping = 0;
void onSignal(int) {
  stopping = 1;
}

void putU32(std::string* out, std::uint32_t v) {
  const std::uint32_t n = htonl(v);
  out->append(reinterpret_cast<const char*>(&n), 4);
}

// One reply packet: length, command, data.
void packet(std::string* out, char cmd, const std::string& data) {
  putU32(out, static_cast<std::uint32_t>(data.size() + 1));
  out->push_back(cmd);
  out->append(data);
}

std::string optnegReply(std::uint32_t mtaProtocol) {
  const std::uint32_t want =
      SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN |
      SMFIP_NODATA | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR |
      SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_HDR_LEADSPC;
  std::string data;
  putU32(&data, SMFI_PROT_VERSION);
  putU32(&data, SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM | SMFIF_SETSYMLIST);
  putU32(&data, mtaProtocol & want);
  const std::pair<std::uint32_t, const char*> lists[] = {{SMFIM_CONNECT, "{relaykit_none}"},
                                                         {SMFIM_HELO, "{relaykit_none}"},
                                                         {SMFIM_ENVFROM, "{auth_authen}"},
                                                         {SMFIM_ENVRCPT, "{relaykit_none}"},
                                                         {SMFIM_DATA, "{relaykit_none}"},
                                                         {SMFIM_EOH, "{relaykit_none}"},
                                                         {SMFIM_EOM, "i"}};
  for (const auto& [stage, names] : lists) {
    putU32(&data, stage);
    data.append(names);
    data.push_back('\0');
  }
  std::string out;
  packet(&out, SMFIC_OPTNEG, data);
  return out;
}

std::string endOfMessageReply() {
  std::string out;
  packet(&out, SMFIR_CHGFROM, std::string("<noreply@corp.com>\0", 19));
  std::string header;
  putU32(&header, 1);
  header.append("From", 5);  // with its NUL
  header.append(std::string(" <noreply@corp.com>\0", 20));
  packet(&out, SMFIR_CHGHEADER, header);
  packet(&out, SMFIR_CONTINUE, "");
  return out;
}

int listenUnix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "milter_floor: socket path longer than %zu bytes\n",
                 sizeof(addr.sun_path) - 1);
    return -1;
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  unlink(path.c_str());
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 512) != 0) {
    std::perror("milter_floor: listen");
    return -1;
  }
  chmod(path.c_str(), 0666);  // Postfix's smtpd connects as its own user
  return fd;
}

int listenLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 512) != 0) {
    std::perror("milter_floor: listen");
    return -1;
  }
  return fd;
}

// Reads what is there, answers every complete packet in one write. False: close the connection.
bool serve(int fd, std::string* in, bool tcp, const std::string& eom) {
  static char buf[65536];
  bool close_it = false;
  for (;;) {
    const ssize_t got = read(fd, buf, sizeof(buf));
    if (got > 0) {
      in->append(buf, static_cast<std::size_t>(got));
      if (tcp) {
        // Postfix writes reply-less commands (macros, MAIL, each header) one by one: ACK
        // them at once, or its Nagle waits for our delayed ACK (the libmilter trap).
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
      }
      continue;
    }
    if (got == 0 || errno != EAGAIN) {
      close_it = true;
    }
    break;
  }
  std::string out;
  std::size_t pos = 0;
  while (!close_it && in->size() - pos >= 5) {
    std::uint32_t len;
    std::memcpy(&len, in->data() + pos, 4);
    len = ntohl(len);
    if (len == 0 || len > kMaxPacket) {
      close_it = true;
      break;
    }
    if (in->size() - pos < 4 + static_cast<std::size_t>(len)) {
      break;
    }
    const char cmd = (*in)[pos + 4];
    if (cmd == SMFIC_OPTNEG && len >= 13) {
      std::uint32_t protocol;
      std::memcpy(&protocol, in->data() + pos + 5 + 8, 4);
      out += optnegReply(ntohl(protocol));
    } else if (cmd == SMFIC_BODYEOB) {
      out += eom;
    } else if (cmd == SMFIC_QUIT) {
      close_it = true;
    }  // MACRO, MAIL, HEADER, ABORT, QUIT_NC: no reply
    pos += 4 + len;
  }
  in->erase(0, pos);
  if (!out.empty() && write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
    close_it = true;
  }
  return !close_it;
}

int acceptOne(int lfd, bool tcp) {
  const int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (c >= 0 && tcp) {
    const int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return c;
}

void runEpoll(int lfd, bool tcp, const std::string& eom) {
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::unordered_map<int, std::string> conns;
  epoll_event events[kMaxEvents];
  while (!stopping) {
    const int n = epoll_wait(ep, events, kMaxEvents, 200);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = acceptOne(lfd, tcp)) >= 0) {
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          conns[c].clear();
        }
        continue;
      }
      if (!serve(fd, &conns[fd], tcp, eom)) {
        conns.erase(fd);
        close(fd);  // also leaves the epoll set
      }
    }
  }
}

// The libevent loop: a persistent read event per connection, freed with it.
struct EventLoop {
  event_base* base = nullptr;
  bool tcp = false;
  const std::string* eom = nullptr;
};

struct EventConn {
  EventLoop* loop = nullptr;
  event* readable = nullptr;
  std::string in;
};

void onConnReadable(evutil_socket_t fd, short, void* arg) {
  auto* c = static_cast<EventConn*>(arg);
  if (!serve(fd, &c->in, c->loop->tcp, *c->loop->eom)) {
    event_free(c->readable);
    close(fd);
    delete c;
  }
}

void onListenerReadable(evutil_socket_t lfd, short, void* arg) {
  auto* loop = static_cast<EventLoop*>(arg);
  int c;
  while ((c = acceptOne(lfd, loop->tcp)) >= 0) {
    auto* conn = new EventConn;
    conn->loop = loop;
    conn->readable = event_new(loop->base, c, EV_READ | EV_PERSIST, onConnReadable, conn);
    event_add(conn->readable, nullptr);
  }
}

void onTick(evutil_socket_t, short, void* arg) {
  if (stopping) {
    event_base_loopbreak(static_cast<event_base*>(arg));
  }
}

void runLibevent(int lfd, bool tcp, const std::string& eom) {
  EventLoop loop;
  loop.base = event_base_new();
  loop.tcp = tcp;
  loop.eom = &eom;
  event* listener = event_new(loop.base, lfd, EV_READ | EV_PERSIST, onListenerReadable, &loop);
  event_add(listener, nullptr);
  event* tick = event_new(loop.base, -1, EV_PERSIST, onTick, loop.base);
  const timeval every{0, 200000};
  event_add(tick, &every);
  event_base_dispatch(loop.base);
  event_free(tick);
  event_free(listener);
  event_base_free(loop.base);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  int port = 0;
  bool libevent = false;
  int opt;
  while ((opt = getopt(argc, argv, "eu:p:")) != -1) {
    if (opt == 'u') {
      path = optarg;
    } else if (opt == 'p') {
      port = std::atoi(optarg);
    } else if (opt == 'e') {
      libevent = true;
    } else {
      path.clear();
      port = 0;
      break;
    }
  }
  if (path.empty() == (port <= 0)) {
    std::fprintf(stderr, "usage: %s [-e] -u SOCKET_PATH | -p PORT\n", argv[0]);
    return 2;
  }
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  std::signal(SIGPIPE, SIG_IGN);
  const int lfd = port > 0 ? listenLoopback(port) : listenUnix(path);
  if (lfd < 0) {
    return 1;
  }
  const std::string eom = endOfMessageReply();
  if (libevent) {
    runLibevent(lfd, port > 0, eom);
  } else {
    runEpoll(lfd, port > 0, eom);
  }
  if (!path.empty()) {
    unlink(path.c_str());
  }
  return 0;
}

// milter_floor.cc: the floor for bench/milter. A single-threaded epoll milter that negotiates the
// same steps as relaykit-milter with the seed rules (no CONNECT/HELO/RCPT/DATA/EOH/body events,
// every no-reply flag, the same macro lists), and at end of message answers at once with the
// edits relaykit makes to the benchmark's messages (a new envelope sender and From header)
// and CONTINUE, in one write. It parses nothing and decides nothing: what Postfix's own side of
// the milter protocol costs per message on this machine, with a milter that costs nothing. No
// milter can make Postfix faster than this one does.
//   milter_floor -u PATH      (a unix socket; runs until SIGTERM/SIGINT)
// Packets over 1 MiB or malformed ones close the connection.
#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
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
  const std::uint32_t want = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NORCPT | SMFIP_NOBODY |
                             SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_CONN |
                             SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR |
                             SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_DATA | SMFIP_NR_UNKN |
                             SMFIP_HDR_LEADSPC;
  std::string data;
  putU32(&data, SMFI_PROT_VERSION);
  putU32(&data, SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM | SMFIF_SETSYMLIST);
  putU32(&data, mtaProtocol & want);
  const std::pair<std::uint32_t, const char*> lists[] = {
      {SMFIM_CONNECT, "j"}, {SMFIM_HELO, "j"}, {SMFIM_ENVFROM, "{auth_authen}"},
      {SMFIM_ENVRCPT, "j"}, {SMFIM_DATA, "j"}, {SMFIM_EOH, "j"},
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

struct Conn {
  std::string in;
};

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  int opt;
  while ((opt = getopt(argc, argv, "u:")) != -1) {
    if (opt == 'u') {
      path = optarg;
    } else {
      std::fprintf(stderr, "usage: %s -u SOCKET_PATH\n", argv[0]);
      return 2;
    }
  }
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "usage: %s -u SOCKET_PATH (shorter than %zu bytes)\n", argv[0],
                 sizeof(addr.sun_path));
    return 2;
  }
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  std::signal(SIGPIPE, SIG_IGN);
  const int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  unlink(path.c_str());
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(lfd, 512) != 0) {
    std::perror("milter_floor: listen");
    return 1;
  }
  chmod(path.c_str(), 0666);  // Postfix's smtpd connects as its own user
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  const std::string eom = endOfMessageReply();
  std::unordered_map<int, Conn> conns;
  epoll_event events[kMaxEvents];
  char buf[65536];
  while (!stopping) {
    const int n = epoll_wait(ep, events, kMaxEvents, 200);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == lfd) {
        int c;
        while ((c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          conns[c] = Conn{};
        }
        continue;
      }
      Conn& conn = conns[fd];
      bool close_it = false;
      for (;;) {
        const ssize_t got = read(fd, buf, sizeof(buf));
        if (got > 0) {
          conn.in.append(buf, static_cast<std::size_t>(got));
          continue;
        }
        if (got == 0 || errno != EAGAIN) {
          close_it = true;
        }
        break;
      }
      std::string out;
      std::size_t pos = 0;
      while (!close_it && conn.in.size() - pos >= 5) {
        std::uint32_t len;
        std::memcpy(&len, conn.in.data() + pos, 4);
        len = ntohl(len);
        if (len == 0 || len > kMaxPacket) {
          close_it = true;
          break;
        }
        if (conn.in.size() - pos < 4 + static_cast<std::size_t>(len)) {
          break;
        }
        const char cmd = conn.in[pos + 4];
        if (cmd == SMFIC_OPTNEG && len >= 13) {
          std::uint32_t protocol;
          std::memcpy(&protocol, conn.in.data() + pos + 5 + 8, 4);
          out += optnegReply(ntohl(protocol));
        } else if (cmd == SMFIC_BODYEOB) {
          out += eom;
        } else if (cmd == SMFIC_QUIT) {
          close_it = true;
        }  // MACRO, MAIL, HEADER, ABORT, QUIT_NC: no reply
        pos += 4 + len;
      }
      conn.in.erase(0, pos);
      if (!out.empty() && write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
        close_it = true;
      }
      if (close_it) {
        conns.erase(fd);
        close(fd);  // also leaves the epoll set
      }
    }
  }
  unlink(path.c_str());
  return 0;
}

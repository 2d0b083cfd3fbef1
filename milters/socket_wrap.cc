// socket_wrap.cc: linker wraps (-Wl,--wrap=accept,--wrap=read,--wrap=sigwait) around the static
// libmilter.a, fixing what libmilter cannot be configured to do.
//
//  - accept: every accepted TCP socket gets TCP_NODELAY (libmilter writes replies in several small
//    writes; with Nagle plus delayed ACK that costs ~40 ms per message, postfix-facts.md).
//  - read: TCP_QUICKACK is re-armed after every read on those sockets (Linux turns it off again).
//  - sigwait: libmilter's signal thread would stop the milter on SIGHUP; the wrapper removes
//    SIGHUP, SIGTERM and SIGINT from the set it waits on, so only relaykit's own signal thread
//    (which calls realSigwait) sees them: SIGHUP reloads, SIGTERM/SIGINT stop fast.
// Failures of setsockopt are ignored (the socket just stays slower). Only async-signal-safe and
// lock-free code runs here. A descriptor number reused by a non-socket after a TCP connection
// closed only costs a failed setsockopt until the next accept re-classifies it.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "milters/socket_wrap.h"

extern "C" {
int __real_accept(int fd, struct sockaddr* addr, socklen_t* len);
ssize_t __real_read(int fd, void* buf, size_t count);
int __real_sigwait(const sigset_t* set, int* sig);
int __wrap_accept(int fd, struct sockaddr* addr, socklen_t* len);
ssize_t __wrap_read(int fd, void* buf, size_t count);
int __wrap_sigwait(const sigset_t* set, int* sig);
}

namespace {

// File descriptors that are accepted TCP connections.
constexpr int kMaxTrackedFd = 65536;
std::atomic<bool> gTcpFd[kMaxTrackedFd];

bool isTcp(int fd) {
  int domain = 0;
  socklen_t len = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    return false;
  }
  return domain == AF_INET || domain == AF_INET6;
}

}  // namespace

extern "C" int __wrap_accept(int fd, struct sockaddr* addr, socklen_t* len) {
  int conn = __real_accept(fd, addr, len);
  if (conn >= 0 && conn < kMaxTrackedFd) {
    bool tcp = isTcp(conn);
    gTcpFd[conn].store(tcp, std::memory_order_relaxed);
    if (tcp) {
      int one = 1;
      (void)setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      (void)setsockopt(conn, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }
  }
  return conn;
}

extern "C" ssize_t __wrap_read(int fd, void* buf, size_t count) {
  ssize_t n = __real_read(fd, buf, count);
  if (n > 0 && fd >= 0 && fd < kMaxTrackedFd && gTcpFd[fd].load(std::memory_order_relaxed)) {
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
  }
  return n;
}

extern "C" int __wrap_sigwait(const sigset_t* set, int* sig) {
  sigset_t reduced = *set;
  sigdelset(&reduced, SIGHUP);
  sigdelset(&reduced, SIGTERM);
  sigdelset(&reduced, SIGINT);
  if (sigisemptyset(&reduced)) {
    for (;;) {
      pause();  // libmilter's signal thread: nothing left for it to wait on
    }
  }
  return __real_sigwait(&reduced, sig);
}

namespace relaykit::milter {

int realSigwait(const sigset_t* set, int* sig) {
  return __real_sigwait(set, sig);
}

}  // namespace relaykit::milter

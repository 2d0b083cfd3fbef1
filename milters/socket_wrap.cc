// socket_wrap.cc: linker wraps around the static libmilter.a (see milters/CMakeLists.txt for the
// list), fixing what libmilter cannot be configured to do. postfix-facts.md has the background;
// docs/milter-performance.md the measurements.
//
//  - accept: every accepted connection gets a SessionIo (below); TCP ones TCP_NODELAY and
//    TCP_QUICKACK (libmilter writes replies in several small writes; with Nagle plus delayed ACK
//    that costs ~40 ms per message). ACKs are delayed so that replies carry them, except that
//    commands answered without a reply are acknowledged as soon as they are read (quickAck()).
//  - read/poll: libmilter reads every command with poll + read(5-byte header) + poll + read(body):
//    four system calls per command, ~12 commands per message. Reads on session sockets are served
//    from a per-connection buffer filled by one read(2) of up to kReadBuffer bytes, and a
//    one-descriptor poll for input on a session with buffered bytes answers at once. The
//    short "is a command waiting?" poll of libmilter's engine (1 ms) blocks (up to the session
//    timeout) when made from a session thread of session_runner.cc, which is what lets a thread
//    serve one session from start to end.
//  - writev: modification replies at end of message (chgfrom, chgheader, insheader, addheader...)
//    are held and written with the final reply in one sendmsg(2): Postfix gets them in one read.
//    Writes never block for longer than kSendTimeoutSeconds (a peer that stops reading).
//  - close: drops the SessionIo before the descriptor number can be reused.
//  - sigwait: libmilter's signal thread would stop the milter on SIGHUP; the wrapper removes
//    SIGHUP, SIGTERM and SIGINT from the set it waits on, so only relaykit's own signal thread
//    (which calls realSigwait) sees them: SIGHUP reloads, SIGTERM/SIGINT stop fast.
// A SessionIo is used by one thread at a time: the listener creates it at accept, hands the
// session to one session thread (a mutex hand-off in session_runner.cc), which alone reads,
// writes and closes it. Descriptors that are not accepted sessions pass straight through.
#include "milters/socket_wrap.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <string>

extern "C" {
int __real_accept(int fd, struct sockaddr* addr, socklen_t* len);
ssize_t __real_read(int fd, void* buf, size_t count);
int __real_poll(struct pollfd* fds, nfds_t nfds, int timeout);
ssize_t __real_writev(int fd, const struct iovec* iov, int iovcnt);
int __real_close(int fd);
int __real_sigwait(const sigset_t* set, int* sig);
int __wrap_accept(int fd, struct sockaddr* addr, socklen_t* len);
ssize_t __wrap_read(int fd, void* buf, size_t count);
int __wrap_poll(struct pollfd* fds, nfds_t nfds, int timeout);
ssize_t __wrap_writev(int fd, const struct iovec* iov, int iovcnt);
int __wrap_close(int fd);
int __wrap_sigwait(const sigset_t* set, int* sig);
}

namespace {

constexpr int kMaxTrackedFd = 65536;
constexpr size_t kReadBuffer = 16 * 1024;     // one read(2) fills this much at most
constexpr size_t kMaxHeldWrite = 256 * 1024;  // held modification bytes before a forced write
constexpr int kSendTimeoutSeconds = 300;      // a peer that stops reading fails the session

struct SessionIo {
  bool tcp = false;
  size_t start = 0;  // unread bytes are buf[start, end)
  size_t end = 0;
  bool eof = false;  // the peer closed: reads return 0 once the buffer is empty
  std::string held;  // modification replies waiting for the final reply
  char buf[kReadBuffer];
};

std::atomic<SessionIo*> gSessions[kMaxTrackedFd];

thread_local bool tSessionThread = false;
thread_local int tSessionTimeoutMs = 0;
thread_local bool tWaitFailed = false;

SessionIo* session(int fd) {
  if (fd < 0 || fd >= kMaxTrackedFd) {
    return nullptr;
  }
  return gSessions[fd].load(std::memory_order_acquire);
}

bool isTcp(int fd) {
  int domain = 0;
  socklen_t len = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    return false;
  }
  return domain == AF_INET || domain == AF_INET6;
}

// True when the last whole milter command in data[0, n) is one this milter always answers at
// once: option negotiation ('O') or end of message ('E'); every other command is negotiated
// without a reply. A trailing partial command means more is on its way: false.
bool replyDue(const char* data, size_t n) {
  size_t i = 0;
  char last = 0;
  while (n - i >= 5) {
    const auto* p = reinterpret_cast<const unsigned char*>(data + i);
    const size_t len = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
    if (len == 0 || len > n - i - 4) {
      return false;
    }
    last = data[i + 4];
    i += 4 + len;
  }
  return i == n && (last == 'O' || last == 'E');
}

// ACK policy of a TCP session. Sessions run in Linux's delayed-ACK ("pingpong") mode, set at
// accept, so that a reply of ours carries the ACK of the command it answers (OPTNEG, end of
// message): one segment instead of two, where the kernel's quick-ACK mode at the start of a
// connection would acknowledge every segment on its own. Commands answered without a reply
// (MAIL, headers, QUIT...) are acknowledged as soon as they are read (TCP_QUICKACK 1 sends the
// pending ACK), then delayed-ACK mode is set again for what comes next: Postfix writes those
// without waiting, and with Nagle on its side its next write would wait for a delayed ACK (up
// to 40 ms) — here it waits only until this thread has read the data.
void setDelayedAck(int fd) {
  int off = 0;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &off, sizeof(off));
}

void quickAck(const SessionIo* s, int fd, const char* data, size_t n) {
  if (s->tcp && !replyDue(data, n)) {
    int on = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
    setDelayedAck(fd);
  }
}

// Milter reply codes that modify the message: they never end a reply sequence, so they can wait
// for the reply that does (continue, accept, tempfail, ...) and go out with it.
bool isModification(char cmd) {
  switch (cmd) {
    case '+':  // add recipient
    case '-':  // delete recipient
    case '2':  // add recipient with ESMTP arguments
    case 'b':  // replace body
    case 'e':  // change envelope sender
    case 'h':  // add header
    case 'i':  // insert header
    case 'm':  // change header
    case 'q':  // quarantine
      return true;
    default:
      return false;
  }
}

// Writes all of iov without blocking for longer than kSendTimeoutSeconds in all (a peer that
// stops reading). -1 with errno on failure; a timeout is ETIMEDOUT, not EAGAIN (libmilter would
// retry EAGAIN forever).
ssize_t writeAll(int fd, struct iovec* iov, int iovcnt) {
  ssize_t total = 0;
  int waitedMs = 0;
  while (iovcnt > 0) {
    if (iov->iov_len == 0) {
      ++iov;
      --iovcnt;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(std::min(iovcnt, IOV_MAX));
    ssize_t n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        return -1;
      }
      constexpr int kStepMs = 1000;
      if (waitedMs >= kSendTimeoutSeconds * 1000) {
        errno = ETIMEDOUT;
        return -1;
      }
      pollfd p{fd, POLLOUT, 0};
      (void)__real_poll(&p, 1, kStepMs);
      waitedMs += kStepMs;
      continue;
    }
    total += n;
    while (n > 0 && iovcnt > 0) {
      size_t step = std::min(static_cast<size_t>(n), iov->iov_len);
      iov->iov_base = static_cast<char*>(iov->iov_base) + step;
      iov->iov_len -= step;
      n -= static_cast<ssize_t>(step);
      if (iov->iov_len == 0) {
        ++iov;
        --iovcnt;
      }
    }
  }
  return total;
}

}  // namespace

extern "C" int __wrap_accept(int fd, struct sockaddr* addr, socklen_t* len) {
  int conn = __real_accept(fd, addr, len);
  if (conn >= 0 && conn < kMaxTrackedFd) {
    auto* s = new (std::nothrow) SessionIo;  // the buffer is left uninitialised on purpose
    if (s) {
      s->tcp = addr && len && *len > 0 ? (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)
                                       : isTcp(conn);
      if (s->tcp) {
        int one = 1;
        (void)setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setDelayedAck(conn);  // the first command, OPTNEG, is answered at once
      }
    }
    delete gSessions[conn].exchange(s, std::memory_order_acq_rel);
  }
  return conn;
}

extern "C" ssize_t __wrap_read(int fd, void* buf, size_t count) {
  SessionIo* s = session(fd);
  if (!s) {
    return __real_read(fd, buf, count);
  }
  if (s->start == s->end) {
    if (s->eof) {
      return 0;
    }
    if (count >= kReadBuffer) {  // large reads go straight to the caller's buffer
      ssize_t n = __real_read(fd, buf, count);
      if (n > 0) {
        quickAck(s, fd, nullptr, 0);
      }
      return n;
    }
    ssize_t n = __real_read(fd, s->buf, kReadBuffer);
    if (n <= 0) {
      return n;
    }
    quickAck(s, fd, s->buf, static_cast<size_t>(n));
    s->start = 0;
    s->end = static_cast<size_t>(n);
  }
  size_t take = std::min(count, s->end - s->start);
  std::memcpy(buf, s->buf + s->start, take);
  s->start += take;
  return static_cast<ssize_t>(take);
}

extern "C" int __wrap_poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  SessionIo* s = nfds == 1 ? session(fds[0].fd) : nullptr;
  if (!s) {
    return __real_poll(fds, nfds, timeout);
  }
  if ((fds[0].events & POLLIN) && (s->start < s->end || s->eof)) {
    fds[0].revents = POLLIN;  // at EOF too: the read that follows returns 0 (libmilter's EOF)
    return 1;
  }
  if ((fds[0].events & POLLOUT) && !(fds[0].events & POLLIN)) {
    // Before a write: writeAll waits itself, bounded, only if the socket buffer is full.
    fds[0].revents = POLLOUT;
    return 1;
  }
  if (timeout >= 0 && timeout < 1000 && tSessionThread) {
    // libmilter's engine asking whether another command is waiting (a poll of 1 ms; its command
    // reads poll for the session timeout, 600 s): wait for the command here.
    // The read that follows is done here at once, so its own poll is answered from the buffer.
    int r;
    do {
      r = __real_poll(fds, 1, tSessionTimeoutMs);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
      tWaitFailed = true;  // idle past the timeout (or a poll error): the session ends
      return r;
    }
    if (fds[0].revents & POLLIN) {
      ssize_t n = recv(fds[0].fd, s->buf, kReadBuffer, MSG_DONTWAIT);
      if (n > 0) {
        quickAck(s, fds[0].fd, s->buf, static_cast<size_t>(n));
        s->start = 0;
        s->end = static_cast<size_t>(n);
      } else if (n == 0) {
        s->eof = true;
      }  // an error shows again on the engine's read
    }
    return r;
  }
  return __real_poll(fds, nfds, timeout);
}

extern "C" ssize_t __wrap_writev(int fd, const struct iovec* iov, int iovcnt) {
  SessionIo* s = session(fd);
  if (!s || iovcnt <= 0) {
    return __real_writev(fd, iov, iovcnt);
  }
  size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) {
    total += iov[i].iov_len;
  }
  // libmilter writes one whole reply per writev: a 4-byte length, the reply code, its data.
  char code = iov[0].iov_len >= 5 ? static_cast<const char*>(iov[0].iov_base)[4] : '\0';
  if (isModification(code) && s->held.size() + total <= kMaxHeldWrite) {
    try {
      for (int i = 0; i < iovcnt; ++i) {
        s->held.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
      }
      return static_cast<ssize_t>(total);
    } catch (...) {
      // out of memory: fall through and write what is held, then this reply
    }
  }
  constexpr int kMaxParts = 16;
  struct iovec parts[kMaxParts + 1];
  int n = 0;
  if (!s->held.empty()) {
    parts[n++] = {s->held.data(), s->held.size()};
  }
  if (iovcnt > kMaxParts) {
    errno = EINVAL;
    return -1;
  }
  for (int i = 0; i < iovcnt; ++i) {
    parts[n++] = iov[i];
  }
  ssize_t written = writeAll(fd, parts, n);
  s->held.clear();
  return written < 0 ? -1 : static_cast<ssize_t>(total);
}

extern "C" int __wrap_close(int fd) {
  if (fd >= 0 && fd < kMaxTrackedFd) {
    delete gSessions[fd].exchange(nullptr, std::memory_order_acq_rel);
  }
  return __real_close(fd);
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

void beginSessionThread(int timeoutSeconds) {
  tSessionThread = true;
  tSessionTimeoutMs = timeoutSeconds * 1000;
  tWaitFailed = false;
}

bool sessionWaitFailed() {
  return tWaitFailed;
}

}  // namespace relaykit::milter

// connection.cc: one client connection over plain libevent events; see connection.h.
//
// Reading: one read(2) of up to kReadChunk bytes per readable event (level-triggered, so a larger
// backlog simply fires again), appended to the input evbuffer the handler consumes. Writing: a
// reply goes out with one send(2) when nothing is queued; what the kernel does not take waits in
// the output evbuffer and goes out with writev(2) when the socket is writable. The idle timeout is
// the read event's timeout (re-armed by every readable event).
#include "common/server/connection.h"

#include <event2/buffer.h>
#include <event2/event.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/server/logging.h"
#include "common/server/server.h"

namespace relaykit {
namespace {

// Bytes taken from the socket per readable event.
constexpr std::size_t kReadChunk = 16 * 1024;

}  // namespace

Connection::Connection(Server* server, int fd, std::uint64_t id, std::string peer)
    : server_(server), fd_(fd), id_(id), peer_(std::move(peer)) {}

Connection::~Connection() {
  if (readEvent_ != nullptr) {
    event_free(readEvent_);
  }
  if (writeEvent_ != nullptr) {
    event_free(writeEvent_);
  }
  if (input_ != nullptr) {
    evbuffer_free(input_);
  }
  if (output_ != nullptr) {
    evbuffer_free(output_);
  }
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

event_base* Connection::base() const {
  return server_->base();
}

void Connection::setHandler(std::unique_ptr<ConnectionHandler> handler) {
  handler_ = std::move(handler);
}

bool Connection::start(const ServerLimits& limits) {
  maxInputBytes_ = limits.maxInputBytes;
  idleTimeout_ = limits.idleTimeout;
  evutil_make_socket_nonblocking(fd_);
  readEvent_ = event_new(server_->base(), fd_, EV_READ | EV_PERSIST, &Connection::onReadable, this);
  writeEvent_ =
      event_new(server_->base(), fd_, EV_WRITE | EV_PERSIST, &Connection::onWritable, this);
  input_ = evbuffer_new();
  output_ = evbuffer_new();
  if (readEvent_ == nullptr || writeEvent_ == nullptr || input_ == nullptr || output_ == nullptr) {
    return false;
  }
  armRead();
  return true;
}

void Connection::armRead() {
  timeval idle{};
  idle.tv_sec = static_cast<time_t>(idleTimeout_.count());
  event_add(readEvent_, idleTimeout_.count() > 0 ? &idle : nullptr);
  reading_ = true;
}

void Connection::send(std::string_view reply) {
  if (fd_ < 0 || reply.empty()) {
    return;
  }
  if (evbuffer_get_length(output_) == 0) {
    // Nothing queued before it: write now, in one send(2). Whatever the kernel does not take is
    // queued below (order is kept) and written when the socket is writable.
    ssize_t n = ::send(fd_, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(reply.size())) {
      return;
    }
    if (n > 0) {
      reply.remove_prefix(static_cast<std::size_t>(n));
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      // The peer is gone; the read side notices too. Close from the loop, not from inside the
      // handler's call stack.
      logDebug("connection from " + peer_ + ": send: " + std::strerror(errno));
      event_active(writeEvent_, EV_WRITE, 0);
    }
  }
  evbuffer_add(output_, reply.data(), reply.size());
  event_add(writeEvent_, nullptr);
}

void Connection::closeAfterWrite() {
  if (fd_ < 0) {
    return;
  }
  closing_ = true;
  pauseReading();
  if (evbuffer_get_length(output_) == 0) {
    close();
  }
}

void Connection::close() {
  if (fd_ < 0) {
    return;
  }
  auto self = shared_from_this();  // we may be erased from the server's table below
  event_del(readEvent_);
  event_del(writeEvent_);
  ::close(fd_);
  fd_ = -1;
  reading_ = false;
  if (handler_) {
    handler_->onClose(*this);
  }
  server_->forget(id_);
}

void Connection::pauseReading() {
  if (fd_ >= 0 && reading_) {
    event_del(readEvent_);
    reading_ = false;
  }
}

void Connection::resumeReading() {
  if (fd_ < 0 || closing_ || reading_) {
    return;
  }
  armRead();
  // Bytes may already be buffered (a pipelined request): hand them over from the loop.
  if (evbuffer_get_length(input_) > 0) {
    event_active(readEvent_, EV_READ, 0);
  }
}

void Connection::dispatchInput() {
  if (closing_ || !handler_) {
    evbuffer_drain(input_, evbuffer_get_length(input_));
    return;
  }
  handler_->onData(*this, input_);
  if (fd_ >= 0 && !closing_ && evbuffer_get_length(input_) > maxInputBytes_) {
    logWarning("closing connection from " + peer_ + ": more than " +
               std::to_string(maxInputBytes_) + " bytes of unprocessed input");
    close();
  }
}

void Connection::onReadable(int fd, short what, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  auto self = c->shared_from_this();
  if (what & EV_TIMEOUT) {
    logInfo("closing idle connection from " + c->peer_);
    c->close();
    return;
  }
  char buf[kReadChunk];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n > 0) {
    evbuffer_add(c->input_, buf, static_cast<std::size_t>(n));
    c->dispatchInput();
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    // A resumeReading() wake-up with nothing new on the socket: serve what is buffered.
    if (evbuffer_get_length(c->input_) > 0) {
      c->dispatchInput();
    }
    return;
  }
  if (n == 0) {
    if (c->handler_ && !c->closing_) {
      c->handler_->onEof(*c, evbuffer_get_length(c->input_));
    }
  } else {
    logDebug("connection from " + c->peer_ + ": read: " + std::strerror(errno));
  }
  c->close();
}

void Connection::onWritable(int fd, short what, void* arg) {
  (void)what;
  auto* c = static_cast<Connection*>(arg);
  auto self = c->shared_from_this();
  while (evbuffer_get_length(c->output_) > 0) {
    int n = evbuffer_write(c->output_, fd);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return;  // still writable later: the event stays armed
      }
      logDebug("connection from " + c->peer_ + ": write: " + std::strerror(errno));
      c->close();
      return;
    }
    if (n == 0) {
      return;
    }
  }
  event_del(c->writeEvent_);
  if (c->closing_) {
    c->close();
  }
}

}  // namespace relaykit

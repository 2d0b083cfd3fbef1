// connection.cc: one client connection over a libevent bufferevent; see connection.h.
#include "common/server/connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <sys/socket.h>

#include <cstring>

#include "common/server/logging.h"
#include "common/server/server.h"

namespace relaykit {

Connection::Connection(Server* server, bufferevent* bev, std::uint64_t id, std::string peer)
    : server_(server), bev_(bev), id_(id), peer_(std::move(peer)) {}

Connection::~Connection() {
  if (bev_ != nullptr) {
    bufferevent_free(bev_);
  }
}

event_base* Connection::base() const {
  return server_->base();
}

void Connection::setHandler(std::unique_ptr<ConnectionHandler> handler) {
  handler_ = std::move(handler);
}

void Connection::start(const ServerLimits& limits) {
  maxInputBytes_ = limits.maxInputBytes;
  timeval idle{};
  idle.tv_sec = static_cast<time_t>(limits.idleTimeout.count());
  bufferevent_setcb(bev_, &Connection::onRead, &Connection::onWrite, &Connection::onEvent, this);
  bufferevent_set_timeouts(bev_, &idle, &idle);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
}

void Connection::send(std::string_view reply) {
  if (bev_ == nullptr || reply.empty()) {
    return;
  }
  evbuffer* output = bufferevent_get_output(bev_);
  if (evbuffer_get_length(output) == 0) {
    // Nothing queued before it: write now, in one send(2), skipping a loop iteration and two
    // epoll_ctl calls. Whatever the kernel does not take is queued below (order is kept).
    ssize_t n =
        ::send(bufferevent_getfd(bev_), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(reply.size())) {
      return;
    }
    if (n > 0) {
      reply.remove_prefix(static_cast<std::size_t>(n));
    }
    // n < 0: EAGAIN queues the reply; a hard error queues it too, and the bufferevent's own
    // write then reports the error and closes the connection.
  }
  evbuffer_add(output, reply.data(), reply.size());
}

void Connection::closeAfterWrite() {
  if (bev_ == nullptr) {
    return;
  }
  closing_ = true;
  bufferevent_disable(bev_, EV_READ);
  if (evbuffer_get_length(bufferevent_get_output(bev_)) == 0) {
    close();
  }
}

void Connection::close() {
  if (bev_ == nullptr) {
    return;
  }
  auto self = shared_from_this();  // we may be erased from the server's table below
  bufferevent_free(bev_);
  bev_ = nullptr;
  if (handler_) {
    handler_->onClose(*this);
  }
  server_->forget(id_);
}

void Connection::pauseReading() {
  if (bev_ != nullptr) {
    bufferevent_disable(bev_, EV_READ);
  }
}

void Connection::resumeReading() {
  if (bev_ != nullptr && !closing_) {
    bufferevent_enable(bev_, EV_READ);
    // Bytes may already be buffered (a pipelined request): hand them over now.
    if (evbuffer_get_length(bufferevent_get_input(bev_)) > 0) {
      bufferevent_trigger(bev_, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
    }
  }
}

void Connection::onRead(bufferevent* bev, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  auto self = c->shared_from_this();
  evbuffer* input = bufferevent_get_input(bev);
  if (c->closing_ || !c->handler_) {
    evbuffer_drain(input, evbuffer_get_length(input));
    return;
  }
  c->handler_->onData(*c, input);
  if (c->bev_ != nullptr && !c->closing_ && evbuffer_get_length(input) > c->maxInputBytes_) {
    logWarning("closing connection from " + c->peer_ + ": more than " +
               std::to_string(c->maxInputBytes_) + " bytes of unprocessed input");
    c->close();
  }
}

void Connection::onWrite(bufferevent* bev, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  if (c->closing_ && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
    c->close();
  }
}

void Connection::onEvent(bufferevent* bev, short what, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  auto self = c->shared_from_this();
  if (what & BEV_EVENT_EOF) {
    std::size_t left = evbuffer_get_length(bufferevent_get_input(bev));
    if (c->handler_ && !c->closing_) {
      c->handler_->onEof(*c, left);
    }
  } else if (what & BEV_EVENT_TIMEOUT) {
    logInfo("closing idle connection from " + c->peer_);
  } else if (what & BEV_EVENT_ERROR) {
    logDebug("connection from " + c->peer_ + ": " +
             evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
  }
  c->close();
}

}  // namespace relaykit

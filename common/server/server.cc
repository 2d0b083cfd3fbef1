// server.cc: listeners, accept, and the table of live connections; see server.h.
#include "common/server/server.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/server/listener.h"
#include "common/server/logging.h"

namespace relaykit {

namespace {

// After accept(2) fails (EMFILE, ENFILE, ENOBUFS), stop accepting this long instead of spinning.
constexpr int kAcceptPauseMs = 100;
// Log at most one "too many connections" line per this many refused connections.
constexpr std::uint64_t kRefusedLogEvery = 100;

std::string peerName(const sockaddr* addr, int len) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr == nullptr || len <= 0) {
    return "unknown";
  }
  if (addr->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unix";
}

void reenableListener(evutil_socket_t, short, void* arg) {
  evconnlistener_enable(static_cast<evconnlistener*>(arg));
}

}  // namespace

Server::Server(event_base* base, Service* service, ServerLimits limits)
    : base_(base), service_(service), limits_(limits) {}

Server::~Server() {
  shutdown();
}

Status Server::addListener(int listenFd, std::string description) {
  evconnlistener* l = evconnlistener_new(
      base_, &Server::onAccept, this, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, listenFd);
  if (l == nullptr) {
    close(listenFd);
    return Status::error("cannot serve " + description);
  }
  evconnlistener_set_error_cb(l, &Server::onAcceptError);
  listeners_.push_back(l);
  return Status::ok();
}

void Server::shutdown() {
  for (auto* l : listeners_) {
    evconnlistener_free(l);
  }
  listeners_.clear();
  auto connections = std::move(connections_);
  connections_.clear();
  for (auto& [id, conn] : connections) {
    conn->close();
  }
}

void Server::forget(std::uint64_t id) {
  connections_.erase(id);
}

void Server::onAccept(evconnlistener*, int fd, sockaddr* addr, int len, void* arg) {
  auto* self = static_cast<Server*>(arg);
  if (self->connections_.size() >= self->limits_.maxConnections) {
    if (self->refusedSinceLog_++ % kRefusedLogEvery == 0) {
      logWarning("too many connections (" + std::to_string(self->connections_.size()) +
                 "): refusing " + peerName(addr, len));
    }
    close(fd);
    return;
  }
  setTcpNoDelay(fd);
  std::uint64_t id = self->nextId_++;
  auto conn = std::make_shared<Connection>(self, fd, id, peerName(addr, len));
  if (!conn->start(self->limits_)) {
    logWarning("cannot set up a connection from " + peerName(addr, len));
    return;  // conn's destructor closes fd
  }
  conn->setHandler(self->service_->newConnection(*conn));
  self->connections_[id] = conn;
}

void Server::onAcceptError(evconnlistener* listener, void*) {
  int err = EVUTIL_SOCKET_ERROR();
  logWarning(std::string("accept: ") + evutil_socket_error_to_string(err));
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
    evconnlistener_disable(listener);
    timeval pause{0, kAcceptPauseMs * 1000};
    event_base_once(evconnlistener_get_base(listener), -1, EV_TIMEOUT, &reenableListener, listener,
                    &pause);
  }
}

}  // namespace relaykit

// server.h: accepts connections on listening sockets and runs them on one libevent loop.
//
// A Server is bound to an event base and a Service; it owns the listeners handed to it and every
// live Connection. Accepted TCP sockets get TCP_NODELAY. Over ServerLimits::maxConnections, new
// connections are closed at once. Not thread-safe: use it on the loop thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/server/connection.h"

struct evconnlistener;
struct event_base;
struct sockaddr;

namespace relaykit {

class Server {
 public:
  Server(event_base* base, Service* service, ServerLimits limits);
  ~Server();  // closes listeners and connections
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves connections accepted on `listenFd` (a bound, listening socket; the Server owns it).
  Status addListener(int listenFd, std::string description);
  // Stops accepting and closes every connection (clean stop).
  void shutdown();
  std::size_t connectionCount() const { return connections_.size(); }
  event_base* base() const { return base_; }
  Service* service() const { return service_; }

  // Called by Connection::close().
  void forget(std::uint64_t id);

 private:
  static void onAccept(evconnlistener* listener, int fd, sockaddr* addr, int len, void* arg);
  static void onAcceptError(evconnlistener* listener, void* arg);

  event_base* base_;
  Service* service_;
  ServerLimits limits_;
  std::vector<evconnlistener*> listeners_;
  std::map<std::uint64_t, std::shared_ptr<Connection>> connections_;
  std::uint64_t nextId_ = 1;
  std::uint64_t refusedSinceLog_ = 0;
};

}  // namespace relaykit

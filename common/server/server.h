// SPDX-License-Identifier: Apache-2.0
// server.h: accepts connections on listening sockets and runs them on one libevent loop.
//
// A Server is bound to an event base and a Service; it owns the listeners handed to it and every
// live Connection. A listener accepts one connection per readable event (accept4(2),
// non-blocking and close-on-exec at once). Accepted TCP sockets get TCP_NODELAY. Each accepted
// connection is admitted by the rules of connection_limits.h (docs/connection-limits.md): its
// peer is identified (uid by SO_PEERCRED or sock_diag, else remote address), refused when a
// PeerPolicy's allowed users do not include it, and when the table is full the oldest idle
// connection its class may displace is evicted; only when there is none is the new connection
// closed at once (rate-limited log line). Caps come from ServerLimits, lowered to fit the soft
// RLIMIT_NOFILE at construction. Refused and evicted connections and per-connection errors are
// counted when setMetrics() was called. Not thread-safe: use it on the loop thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/server/connection.h"
#include "common/server/connection_limits.h"
#include "common/server/peer_credentials.h"

struct event_base;
struct sockaddr;

namespace relaykit {

class Counter;
template <typename T>
class MetricFamily;
using CounterFamily = MetricFamily<Counter>;

// Raises the soft RLIMIT_NOFILE to the hard limit (systemd starts services with a soft limit of
// 1024 and a much higher hard one). Returns the soft limit in force afterwards.
std::uint64_t raiseOpenFileLimit();
// The soft RLIMIT_NOFILE now.
std::uint64_t openFileLimit();
// The uids trusted by default: root and the `postfix` user (when it exists).
std::vector<uid_t> defaultTrustedUids();

class Server {
 public:
  Server(event_base* base, Service* service, ServerLimits limits);
  ~Server();  // closes listeners and connections
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves connections accepted on `listenFd` (a bound, listening socket; the Server owns it).
  Status addListener(int listenFd, std::string description);
  // Who is trusted and who is let in (default: root and postfix trusted, everyone allowed).
  void setPeerPolicy(PeerPolicy policy) { policy_ = std::move(policy); }
  // Counts refusals, evictions and connection errors under label server="NAME" in `registry`
  // (relaykit_connections_refused_total, relaykit_connections_evicted_total,
  // relaykit_connection_errors_total) and publishes the caps (relaykit_connection_limit).
  void setMetrics(MetricsRegistry* registry, const std::string& name);
  const ConnectionCaps& caps() const { return caps_; }
  // Called by Connection on an error close ("exception", "request_timeout", ...).
  void countConnectionError(const char* reason);
  // Stops accepting and closes every connection (clean stop).
  void shutdown();
  std::size_t connectionCount() const { return connections_.size(); }
  event_base* base() const { return base_; }
  Service* service() const { return service_; }

  // Called by Connection::close().
  void forget(Connection* conn);

 private:
  struct Listener;
  static void onListenerReadable(int fd, short what, void* arg);
  static void onListenerResume(int fd, short what, void* arg);
  // accept() with any exception caught and counted.
  void acceptGuarded(int fd, sockaddr* addr, int len, const sockaddr_storage* local);
  // accept(2) failed with `err` (not EAGAIN): logs; pauses the listener on resource errors.
  void acceptFailed(Listener* l, int err);

  struct Entry {
    std::shared_ptr<Connection> conn;
    std::string peerKey;  // "" when the peer has no per-peer cap
    bool trusted = false;
  };
  // `local`: the accepted socket's own address when its listener's says it (may be null).
  void accept(int fd, sockaddr* addr, int len, const sockaddr_storage* local);
  // Makes room for a peer as `decision` says; false when no connection may be evicted.
  bool makeRoom(const AdmissionDecision& decision, const std::string& peerKey,
                const std::string& who);
  void refuse(int fd, const char* reason, const std::string& who, const PeerIdentity& peer);

  event_base* base_;
  Service* service_;
  ServerLimits limits_;
  ConnectionCaps caps_;
  PeerPolicy policy_;
  PeerResolver resolver_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  // The live connections, in no particular order: each knows its slot (Connection::tableSlot()),
  // so adding and removing one (the last moves into its slot) costs no allocation and no search.
  std::vector<Entry> connections_;
  std::size_t untrusted_ = 0;
  std::unordered_map<std::string, std::size_t> perPeer_;
  std::uint64_t nextId_ = 1;
  std::uint64_t refusedSinceLog_ = 0;
  std::uint64_t evictedSinceLog_ = 0;
  CounterFamily* refused_ = nullptr;
  CounterFamily* evicted_ = nullptr;
  CounterFamily* errors_ = nullptr;
  std::string metricsName_;
};

}  // namespace relaykit

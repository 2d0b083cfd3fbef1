// SPDX-License-Identifier: Apache-2.0
// server.cc: listeners, accept, and the table of live connections; see server.h.
#include "common/server/server.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>

#include "common/server/listener.h"
#include "common/server/logging.h"
#include "common/server/metrics.h"

namespace relaykit {

namespace {

// After accept(2) fails (EMFILE, ENFILE, ENOBUFS), stop accepting this long instead of spinning.
constexpr int kAcceptPauseMs = 100;
// Connections accepted per readable event of a listener. One: the accept never comes back
// EAGAIN (the wake-up said one is queued), and with more queued the level-triggered listener is
// ready again at the next loop iteration, after the ready connections had their turn, so a burst
// of connections neither costs an extra accept(2) nor holds back the clients being served.
constexpr int kAcceptsPerWakeup = 1;
// Log at most one "too many connections" line per this many refused connections.
constexpr std::uint64_t kRefusedLogEvery = 100;
// Log at most one eviction line per this many evictions.
constexpr std::uint64_t kEvictedLogEvery = 100;
// The user Postfix's daemons run as (mail_owner's default), trusted by default.
constexpr char kPostfixUser[] = "postfix";

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

}  // namespace

// One listening socket on the loop: a plain read event (libevent's evconnlistener accepts until
// accept(2) fails with EAGAIN, one wasted system call per wake-up) and the timer that resumes
// accepting after a resource error.
struct Server::Listener {
  Server* server = nullptr;
  int fd = -1;
  event* readable = nullptr;
  event* resume = nullptr;
  // The address of a TCP listener bound to one address (not the wildcard): every connection it
  // accepts has it as its own, so the peer lookup needs no getsockname(2) per connection.
  sockaddr_storage local{};
  bool localKnown = false;

  ~Listener() {
    if (readable != nullptr) {
      event_free(readable);
    }
    if (resume != nullptr) {
      event_free(resume);
    }
    if (fd >= 0) {
      close(fd);
    }
  }
};

std::uint64_t openFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return 1024;
  }
  return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : static_cast<std::uint64_t>(rl.rlim_cur);
}

std::uint64_t raiseOpenFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      logWarning(std::string("cannot raise the open-file limit to ") + std::to_string(rl.rlim_max) +
                 ": " + std::strerror(errno));
    }
  }
  return openFileLimit();
}

std::vector<uid_t> defaultTrustedUids() {
  std::vector<uid_t> uids{0};
  if (const passwd* pw = getpwnam(kPostfixUser)) {
    uids.push_back(pw->pw_uid);
  }
  return uids;
}

Server::Server(event_base* base, Service* service, ServerLimits limits)
    : base_(base), service_(service), limits_(limits) {
  caps_ = computeConnectionCaps(limits_.maxConnections, limits_.reservedConnections,
                                limits_.maxConnectionsPerUser, limits_.maxConnectionsPerAddress,
                                openFileLimit());
  policy_.trustedUids = defaultTrustedUids();
}

Server::~Server() {
  shutdown();
}

Status Server::addListener(int listenFd, std::string description) {
  auto l = std::make_unique<Listener>();
  l->server = this;
  l->fd = listenFd;
  socklen_t localLen = sizeof l->local;
  if (getsockname(listenFd, reinterpret_cast<sockaddr*>(&l->local), &localLen) == 0) {
    if (l->local.ss_family == AF_INET) {
      l->localKnown =
          reinterpret_cast<const sockaddr_in*>(&l->local)->sin_addr.s_addr != htonl(INADDR_ANY);
    } else if (l->local.ss_family == AF_INET6) {
      l->localKnown =
          !IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&l->local)->sin6_addr);
    }
  }
  l->readable =
      event_new(base_, listenFd, EV_READ | EV_PERSIST, &Server::onListenerReadable, l.get());
  l->resume = event_new(base_, -1, 0, &Server::onListenerResume, l.get());
  if (l->readable == nullptr || l->resume == nullptr || event_add(l->readable, nullptr) != 0) {
    return Status::error("cannot serve " + description);  // ~Listener closes listenFd
  }
  listeners_.push_back(std::move(l));
  return Status::ok();
}

void Server::setMetrics(MetricsRegistry* registry, const std::string& name) {
  metricsName_ = name;
  refused_ = &registry->counter(
      "relaykit_connections_refused_total",
      "New connections closed at once, by server and reason (total, shared, per_peer, "
      "not_allowed)",
      {"server", "reason"});
  evicted_ =
      &registry->counter("relaykit_connections_evicted_total",
                         "Idle connections closed to make room for a new one, by server and reason",
                         {"server", "reason"});
  errors_ = &registry->counter(
      "relaykit_connection_errors_total",
      "Connections closed by the skeleton, by server and reason (exception, request_timeout, "
      "write_timeout, input_limit, idle_timeout)",
      {"server", "reason"});
  registry
      ->gauge("relaykit_connection_limit",
              "Connection caps in force, by server and kind (total, reserved, per_user, "
              "per_address)",
              {"server", "kind"})
      .labels({name, "total"})
      .set(static_cast<double>(caps_.total));
  auto& limit = registry->gauge("relaykit_connection_limit", "", {"server", "kind"});
  limit.labels({name, "reserved"}).set(static_cast<double>(caps_.reserved));
  limit.labels({name, "per_user"}).set(static_cast<double>(caps_.perUser));
  limit.labels({name, "per_address"}).set(static_cast<double>(caps_.perAddress));
}

void Server::countConnectionError(const char* reason) {
  if (errors_ != nullptr) {
    errors_->labels({metricsName_, reason}).inc();
  }
}

void Server::shutdown() {
  listeners_.clear();
  auto connections = std::move(connections_);
  connections_.clear();
  for (Entry& entry : connections) {
    entry.conn->setTableSlot(Connection::kNoSlot);
    entry.conn->close();
  }
  untrusted_ = 0;
  perPeer_.clear();
}

void Server::forget(Connection* conn) {
  const std::size_t slot = conn->tableSlot();
  if (slot >= connections_.size() || connections_[slot].conn.get() != conn) {
    return;
  }
  conn->setTableSlot(Connection::kNoSlot);
  Entry& entry = connections_[slot];
  if (!entry.trusted && untrusted_ > 0) {
    --untrusted_;
  }
  if (!entry.peerKey.empty()) {
    auto p = perPeer_.find(entry.peerKey);
    if (p != perPeer_.end() && --p->second == 0) {
      perPeer_.erase(p);
    }
  }
  if (slot + 1 != connections_.size()) {
    entry = std::move(connections_.back());
    entry.conn->setTableSlot(slot);
  }
  connections_.pop_back();
}

void Server::onListenerReadable(int fd, short, void* arg) {
  auto* l = static_cast<Listener*>(arg);
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    // Non-blocking and close-on-exec from the start: no fcntl(2) per connection.
    const int conn =
        accept4(fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) {
        return;  // nothing (more) to accept, or the client gave up first
      }
      l->server->acceptFailed(l, err);
      return;
    }
    l->server->acceptGuarded(conn, reinterpret_cast<sockaddr*>(&addr), static_cast<int>(len),
                             l->localKnown ? &l->local : nullptr);
  }
}

void Server::onListenerResume(int, short, void* arg) {
  auto* l = static_cast<Listener*>(arg);
  event_add(l->readable, nullptr);
}

void Server::acceptGuarded(int fd, sockaddr* addr, int len, const sockaddr_storage* local) {
  try {
    accept(fd, addr, len, local);
  } catch (const std::exception& e) {
    // The connection may or may not be in the table; a half-set-up one is closed by its owner.
    logError(std::string("accept: unexpected exception: ") + e.what());
    countConnectionError("exception");
  } catch (...) {
    logError("accept: unexpected exception");
    countConnectionError("exception");
  }
}

void Server::refuse(int fd, const char* reason, const std::string& who, const PeerIdentity& peer) {
  if (refused_ != nullptr) {
    refused_->labels({metricsName_, reason}).inc();
  }
  if (refusedSinceLog_++ % kRefusedLogEvery == 0) {
    logWarning("refusing connection from " + who + " (" + peer.describe() + "): " +
               (std::string(reason) == "not_allowed"
                    ? std::string("user not in allowed_users")
                    : "connection limit (" + std::string(reason) + ") reached with " +
                          std::to_string(connections_.size()) + " connections") +
               " (logged once per " + std::to_string(kRefusedLogEvery) + ")");
  }
  close(fd);
}

bool Server::makeRoom(const AdmissionDecision& decision, const std::string& peerKey,
                      const std::string& who) {
  std::vector<EvictionCandidate> candidates;
  candidates.reserve(connections_.size());
  for (const Entry& entry : connections_) {
    if (decision.scope == AdmissionDecision::Scope::kSamePeer && entry.peerKey != peerKey) {
      continue;
    }
    EvictionCandidate c;
    c.id = entry.conn->id();
    c.idle = entry.conn->isIdle();
    c.trusted = entry.trusted;
    c.peerKey = entry.peerKey;
    c.idleSinceMs = entry.conn->lastActivityMs();
    candidates.push_back(std::move(c));
  }
  auto victim = chooseEviction(candidates, decision.scope, peerKey);
  if (!victim) {
    return false;
  }
  auto it = std::find_if(connections_.begin(), connections_.end(),
                         [&](const Entry& e) { return e.conn->id() == *victim; });
  if (it == connections_.end()) {
    return false;
  }
  std::shared_ptr<Connection> conn = it->conn;
  if (evicted_ != nullptr) {
    evicted_->labels({metricsName_, decision.reason}).inc();
  }
  if (evictedSinceLog_++ % kEvictedLogEvery == 0) {
    logWarning("connection limit (" + std::string(decision.reason) +
               ") reached: closing the oldest idle connection, from " + conn->peer() +
               ", to admit " + who + " (logged once per " + std::to_string(kEvictedLogEvery) + ")");
  }
  conn->close();
  return true;
}

void Server::accept(int fd, sockaddr* addr, int len, const sockaddr_storage* local) {
  const std::string name = peerName(addr, len);
  const PeerIdentity peer = resolver_.resolve(fd, addr, static_cast<socklen_t>(len), local);
  if (!policy_.isAllowed(peer)) {
    refuse(fd, "not_allowed", name, peer);
    return;
  }
  const bool trusted = policy_.isTrusted(peer);
  const std::string key = trusted ? std::string() : peer.key();
  std::size_t peerCap = 0;
  if (!key.empty()) {
    peerCap = peer.kind == PeerIdentity::Kind::kAddress ? caps_.perAddress : caps_.perUser;
  }
  AdmissionCounts counts;
  counts.total = connections_.size();
  counts.untrusted = untrusted_;
  if (!key.empty()) {
    auto p = perPeer_.find(key);
    counts.samePeer = p != perPeer_.end() ? p->second : 0;
  }
  AdmissionDecision decision = decideAdmission(counts, trusted, peerCap, caps_);
  if (decision.action != AdmissionDecision::Action::kAdmit) {
    if (decision.action == AdmissionDecision::Action::kRefuse || !makeRoom(decision, key, name)) {
      refuse(fd, decision.reason, name, peer);
      return;
    }
  }
  if (addr != nullptr && len > 0 && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
    setTcpNoDelayOnTcp(fd);  // TCP only: the accepted address says which (no getsockname(2))
  }
  std::uint64_t id = nextId_++;
  auto conn = std::make_shared<Connection>(this, fd, id, name);
  if (!conn->start(limits_)) {
    logWarning("cannot set up a connection from " + name);
    return;  // conn's destructor closes fd
  }
  Entry entry;
  entry.conn = conn;
  entry.peerKey = key;
  entry.trusted = trusted;
  conn->setTableSlot(connections_.size());
  connections_.push_back(std::move(entry));
  if (!trusted) {
    ++untrusted_;
  }
  if (!key.empty()) {
    ++perPeer_[key];
  }
  std::unique_ptr<ConnectionHandler> handler;
  try {
    handler = service_->newConnection(*conn);
  } catch (const std::exception& e) {
    conn->closeForError("exception", "closing connection from " + name +
                                         ": unexpected exception setting it up: " + e.what());
    return;
  }
  if (!handler) {
    conn->close();
    return;
  }
  conn->setHandler(std::move(handler));
  conn->readFirst();
}

void Server::acceptFailed(Listener* l, int err) {
  logWarning(std::string("accept: ") + std::strerror(err));
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
    // Out of descriptors or memory: the queued connection stays ready, so retrying at once would
    // spin. Stop accepting for a moment.
    event_del(l->readable);
    timeval pause{0, kAcceptPauseMs * 1000};
    event_add(l->resume, &pause);
  }
}

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// connection.h: what a daemon's protocol code sees of one client connection, and the Service
// interface a daemon implements to plug into the shared skeleton (common/server/daemon.h).
//
// The skeleton owns sockets and the libevent loop; a Service supplies one ConnectionHandler per
// connection, fed the connection's input buffer as bytes arrive. A connection is a socket with a
// plain read event and write event (no bufferevent: its reads cost an extra ioctl(FIONREAD) per
// request), so a request/reply exchange costs one read(2) and one send(2). Its input is one flat
// buffer (InputBuffer) that read(2) fills directly, so a handler sees the unconsumed bytes as one
// contiguous view, with no copy and no evbuffer chain walk. Guarantees:
//  - send() writes one reply in one send(2) right away when nothing is queued before it (else it
//    queues it as one contiguous piece, written with one writev(2)); TCP_NODELAY is on for TCP, so
//    Nagle/delayed-ACK stalls cannot happen;
//  - closeAfterWrite() stops reading and closes once the queued replies are written;
//  - input is bounded (ServerLimits::maxInputBytes of unconsumed bytes, then the connection is
//    logged and closed);
//  - deadlines that do not restart on every byte (docs/connection-limits.md): a connection with no
//    request in progress closes after ServerLimits::idleTimeout; a request must be complete within
//    ServerLimits::requestTimeout of its first byte (a request is in progress while unconsumed
//    input is buffered or the handler's midRequest() says so);
//  - output is bounded: over ServerLimits::maxOutputBytes of queued replies the connection stops
//    reading (outputBlocked(); handlers that loop over pipelined requests stop there) and resumes
//    once the client has read it down to half; a client that does not read it down within
//    ServerLimits::writeTimeout is closed;
//  - everything runs on the event-loop thread; handler methods must not block and should not
//    throw: the skeleton catches what they throw, closes that connection only, logs it and
//    counts it (relaykit_connection_errors_total{reason="exception"}). Async work (hiredis
//    replies) keeps a std::weak_ptr<Connection> (weak()) and checks it is still open before
//    replying; pauseReading() holds further requests meanwhile. Callbacks a service registers
//    itself (its own timers, hiredis) should run their body through runGuarded().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/diagnostics.h"
#include "common/file_stamp.h"
#include "common/server/input_buffer.h"
#include "common/status.h"

struct event;
struct evbuffer;
struct event_base;

namespace relaykit {

class MetricsRegistry;
class Server;
class ConnectionHandler;

// Per-connection and per-server limits; each daemon may set its own (Service::limits()).
// docs/connection-limits.md explains each and how the connection caps are derived.
struct ServerLimits {
  // No request in progress for this long: closed. Longer than Postfix's own 10 s idle close for
  // socketmap clients. Restarts when a request completes, not on every byte.
  std::chrono::seconds idleTimeout{60};
  // A request must be complete this long after its first byte (0: no deadline). Postfix sends a
  // request in one write; only a client dripping bytes hits it.
  std::chrono::seconds requestTimeout{10};
  // Queued output over maxOutputBytes (or the last replies after closeAfterWrite()) must be read
  // down within this, else the connection is closed.
  std::chrono::seconds writeTimeout{10};
  // Unconsumed input allowed before the connection is refused as abusive.
  std::size_t maxInputBytes = 256 * 1024;
  // Queued reply bytes over which the connection stops reading (a client pipelining requests
  // without reading replies). One Postfix socketmap reply is at most 100,000 bytes.
  std::size_t maxOutputBytes = 256 * 1024;
  // Live connections wanted; the skeleton lowers it to fit RLIMIT_NOFILE (computeConnectionCaps).
  std::size_t maxConnections = 4096;
  // Part of maxConnections only trusted peers (root, postfix, allowed_users) may use.
  std::size_t reservedConnections = 256;
  // Live connections of one untrusted local user (uid) and of one remote address.
  std::size_t maxConnectionsPerUser = 64;
  std::size_t maxConnectionsPerAddress = 256;
};

// Runs `body`, catching any exception: logs it with `what` and returns false. For callbacks a
// service registers on the loop itself (timers, hiredis replies): nothing may throw into libevent.
bool runGuarded(const char* what, const std::function<void()>& body);

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Takes ownership of the connected, non-blocking socket `fd` (closed when the connection
  // closes).
  Connection(Server* server, int fd, std::uint64_t id, std::string peer);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  std::uint64_t id() const { return id_; }
  // "127.0.0.1:40112", "[::1]:40112" or "unix" (for log lines).
  const std::string& peer() const { return peer_; }
  bool isOpen() const { return fd_ >= 0; }
  // The socket, for socket options (the milter's TCP_QUICKACK); -1 once closed. Reading and
  // writing stay with the Connection.
  int fd() const { return fd_; }
  std::weak_ptr<Connection> weak() { return weak_from_this(); }
  event_base* base() const;

  // Queues one complete reply (see the guarantees above). Ignored once closed.
  void send(std::string_view reply);
  // Closes after everything queued is written; input that arrives meanwhile is ignored.
  void closeAfterWrite();
  // Closes now, dropping unsent output. Safe to call from inside the handler's callbacks.
  void close();
  void pauseReading();
  void resumeReading();
  // True while queued output is over ServerLimits::maxOutputBytes: a handler answering pipelined
  // requests in a loop stops taking requests (they stay in the input buffer until it drains).
  bool outputBlocked() const { return outputBlocked_; }
  // Bytes of replies queued and not yet taken by the kernel.
  std::size_t queuedOutputBytes() const;
  // No request in progress and nothing queued: what eviction looks at.
  bool isIdle() const;
  // Monotonic milliseconds of the last request completed or reply sent (connect time at first).
  std::int64_t lastActivityMs() const { return lastActivityMs_; }
  // Monotonic milliseconds when the connection was accepted.
  std::int64_t connectedMs() const { return connectedMs_; }
  // The handler's own deadline, in monotonic milliseconds (steadyMs()); 0 for none. Once it has
  // passed, the handler's onDeadline() runs from the loop (never inside this call), once per
  // setting. May be set while the handler is made (newConnection()). The connection's one timer
  // serves it and the idle, request and write deadlines: a deadline later than the one armed costs
  // no timer update (the timer fires early and is armed again for the rest).
  void setHandlerDeadline(std::int64_t atMs);
  // A std::chrono::steady_clock time in the milliseconds of lastActivityMs() and
  // setHandlerDeadline(), rounded up (a deadline is never brought forward).
  static std::int64_t steadyMs(std::chrono::steady_clock::time_point t) {
    return std::chrono::ceil<std::chrono::milliseconds>(t.time_since_epoch()).count();
  }

  // Used by the skeleton.
  void setHandler(std::unique_ptr<ConnectionHandler> handler);
  // Where the server's table holds this connection (kNoSlot: not in it).
  static constexpr std::size_t kNoSlot = static_cast<std::size_t>(-1);
  std::size_t tableSlot() const { return tableSlot_; }
  void setTableSlot(std::size_t slot) { tableSlot_ = slot; }
  // Returns false if the events cannot be set up (the caller drops the connection).
  bool start(const ServerLimits& limits);
  // Reads what the client sent along with its connect, as if the socket had polled readable.
  // Postfix speaks first to all three daemons (milter option negotiation, policy and socketmap
  // requests) and has usually written by the time the connection is accepted: read at once, the
  // request costs no wake-up of its own. With nothing there yet, one read(2) answers EAGAIN and
  // the connection holds no input buffer (an idle flood costs no memory per connection).
  void readFirst();
  // Closes as an error of kind `reason` (counted per server; "exception", "request_timeout", ...).
  void closeForError(const char* reason, const std::string& logLine);

 private:
  enum class Phase { kIdle, kRequest, kDraining };
  static void onReadable(int fd, short what, void* arg);
  static void onWritable(int fd, short what, void* arg);
  static void onDeadline(int fd, short what, void* arg);
  void updateReadEvent();
  void dispatchInput();
  // After input was handled or output written: the phase, its deadline, and reading on or off.
  void settle();
  void enterPhase(Phase phase, std::chrono::seconds timeout);
  // Arms the timer for the earlier of the phase's and the handler's deadline, unless it is armed
  // for an earlier time already.
  void armDeadline(std::int64_t nowMs);
  bool handlerMidRequest();

  // Queues what send() could not write (the output buffer is made on first use: most
  // connections never need it).
  bool queueOutput(std::string_view bytes);

  Server* server_;
  int fd_;
  std::size_t tableSlot_ = kNoSlot;
  // The three events (read, write, the one timer; event_assign), in the connection itself when
  // libevent's struct event fits kInlineEventBytes (128 bytes in libevent 2.1), else in one block
  // of their own.
  static constexpr std::size_t kInlineEventBytes = 128;
  alignas(16) unsigned char inlineEvents_[3 * kInlineEventBytes];
  std::unique_ptr<unsigned char[]> eventBlock_;
  event* readEvent_ = nullptr;
  event* writeEvent_ = nullptr;
  event* deadline_ = nullptr;
  InputBuffer input_;
  evbuffer* output_ = nullptr;
  ServerLimits limits_;
  bool reading_ = false;        // the read event is armed
  bool writeUsed_ = false;      // the write event was added or activated (close() deletes it)
  bool handlerPaused_ = false;  // pauseReading() by the handler
  bool outputBlocked_ = false;  // over maxOutputBytes: not reading until drained to half
  Phase phase_ = Phase::kIdle;
  // One timer serves the phase's deadline and the handler's. It stays armed for the earliest
  // deadline set since it last fired (armedForMs_): a later deadline (the next request's idle
  // phase) costs no timer update; onDeadline() re-arms it for what is left. 0: none.
  std::int64_t phaseDeadlineMs_ = 0;
  std::int64_t handlerDeadlineMs_ = 0;
  std::int64_t armedForMs_ = 0;
  // The timer was armed by enterPhase() for that phase's own deadline, as a libevent timeout
  // from the loop's time (as any timeout counts): when it fires, that deadline has come.
  bool armedForPhase_ = false;
  std::uint64_t phaseEntries_ = 0;  // enterPhase() calls: a phase begun in a handler's callback
  // A request's first byte came in this onReadable(): its deadline is armed by settle() unless
  // the request is answered within the same call (then the connection goes straight back to idle).
  bool requestArmPending_ = false;
  std::int64_t connectedMs_;
  std::int64_t idleSinceMs_ = 0;  // when the current idle phase began
  std::int64_t lastActivityMs_ = 0;
  std::uint64_t id_;
  std::string peer_;
  std::unique_ptr<ConnectionHandler> handler_;
  bool closing_ = false;
  // Inside the handler's onData(): a reply sent then is dated by settle() (one clock read per
  // request, shared with the idle phase's start) instead of by send() itself.
  bool dispatching_ = false;
  bool sentInDispatch_ = false;
};

class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // Bytes arrived. `input` holds every byte not yet consumed, contiguous: consume() what you have
  // handled, leave an incomplete request in place. Views into it are valid until onData returns.
  virtual void onData(Connection& conn, InputBuffer& input) = 0;
  // The peer closed its side; `unconsumed` bytes were left (a truncated request when non-zero).
  // The connection is closed right after.
  virtual void onEof(Connection& conn, std::size_t unconsumed) {
    (void)conn;
    (void)unconsumed;
  }
  // The connection is gone (any reason); called once, before the handler is destroyed.
  virtual void onClose(Connection& conn) { (void)conn; }
  // The deadline set with Connection::setHandlerDeadline() has passed.
  virtual void onDeadline(Connection& conn) { (void)conn; }
  // True while the handler holds part of a request it consumed from `input` (a decoder in the
  // middle of a message). Unconsumed input counts as a request in progress anyway; a handler
  // that drains partial requests into its own decoder must say so here, or a client dripping one
  // byte at a time is only subject to the idle timeout.
  virtual bool midRequest() const { return false; }
};

// What a daemon's /health answers: Ok and Degraded are 200 (the body says "ok" or
// "degraded: REASON"), Unavailable is 503 ("unavailable: REASON"). Degraded means the daemon
// serves, but not everything it was configured for (e.g. rate limits unenforced while the
// store is down with on_store_error: open).
struct Health {
  enum class Level { Ok, Degraded, Unavailable };
  Level level = Level::Ok;
  std::string reason;  // empty for Ok; one line, no secrets

  static Health ok() { return Health(); }
  static Health degraded(std::string why) { return Health{Level::Degraded, std::move(why)}; }
  static Health unavailable(std::string why) { return Health{Level::Unavailable, std::move(why)}; }
};

class Service {
 public:
  virtual ~Service() = default;
  // Which YAML section holds this daemon's listen/user/metrics settings.
  virtual DaemonSection section() const = 0;
  // Builds the service's own compiled state from `config`, reporting problems into `diags`.
  // When `install` and there are no errors, publishes it for new requests (the reload swap).
  // Returns false on errors (the previous state, if any, stays).
  virtual bool configure(const std::shared_ptr<const Config>& config, Diagnostics* diags,
                         bool install) = 0;
  // Called once on the loop thread after binding and dropping privileges, before serving.
  virtual Status start(event_base* base, MetricsRegistry* metrics) {
    (void)base;
    (void)metrics;
    return Status::ok();
  }
  // Called once when the daemon stops (loop thread), before connections are closed.
  virtual void stop() {}
  // What /health answers (called on the loop thread for each /health request; must be cheap).
  virtual Health health() const { return Health::ok(); }
  virtual ServerLimits limits() const { return ServerLimits(); }
  virtual std::unique_ptr<ConnectionHandler> newConnection(Connection& conn) = 0;
  // Files the installed state was compiled from besides the configuration file, each with its
  // stamp from before it was read: the skeleton reloads (as on SIGHUP) when one of them changes
  // (daemon.h). Called on the loop thread once a second; must be cheap.
  virtual std::vector<WatchedFile> watchedFiles() const { return {}; }
};

}  // namespace relaykit

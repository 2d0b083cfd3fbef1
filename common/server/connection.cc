// SPDX-License-Identifier: Apache-2.0
// connection.cc: one client connection over plain libevent events; see connection.h.
//
// Reading: one read(2) of up to kReadChunk bytes per readable event (level-triggered, so a larger
// backlog simply fires again) straight into the free tail of the connection's flat input buffer;
// the handler consumes from its front. Writing: a reply goes out with one send(2) when nothing is
// queued; what the kernel does not take waits in the output evbuffer and goes out with writev(2)
// when the socket is writable. One timer per connection serves the deadline of its phase: idle
// (idleTimeout from the last completed request), request (requestTimeout from the request's first
// byte, never restarted by later bytes) or draining (writeTimeout from the moment queued output
// went over the cap, or closeAfterWrite()), and the handler's own (setHandlerDeadline()). It
// stays armed for the earliest deadline set since it last fired: a request answered within one
// readable event leaves it alone (no timer update per request), and a timer that fires early is
// armed again for the rest.
// Every call into the handler is guarded: an exception closes this connection only.
#include "common/server/connection.h"

#include <event2/buffer.h>
#include <event2/event.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <vector>

#include "common/server/logging.h"
#include "common/server/server.h"

namespace relaykit {
namespace {

// Bytes taken from the socket per readable event, at most (the input buffer's first size).
constexpr std::size_t kReadChunk = InputBuffer::kBlockBytes;
// An input buffer grown past this (a large pipelined burst, a milter body chunk) is freed once
// it is empty again; smaller ones are kept for the next request.
constexpr std::size_t kInputKeepBytes = 64 * 1024;

// Bytes per event in Connection's event block, rounded up to keep each event aligned.
std::size_t eventStride() {
  static const std::size_t stride = (event_get_struct_event_size() + 15) / 16 * 16;
  return stride;
}

std::int64_t monotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The deadline `timeout` after `fromMs`; 0 (none) for a timeout of 0.
std::int64_t deadlineAfter(std::int64_t fromMs, std::chrono::seconds timeout) {
  return timeout.count() > 0 ? fromMs + static_cast<std::int64_t>(timeout.count()) * 1000 : 0;
}

}  // namespace

bool runGuarded(const char* what, const std::function<void()>& body) {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    logError(std::string(what) + ": unexpected exception: " + e.what());
  } catch (...) {
    logError(std::string(what) + ": unexpected exception");
  }
  return false;
}

Connection::Connection(Server* server, int fd, std::uint64_t id, std::string peer)
    : server_(server),
      fd_(fd),
      connectedMs_(monotonicMs()),
      idleSinceMs_(connectedMs_),
      lastActivityMs_(connectedMs_),
      id_(id),
      peer_(std::move(peer)) {}

Connection::~Connection() {
  if (readEvent_ != nullptr && fd_ >= 0) {  // close() took them off the loop already
    event_del(readEvent_);
    event_del(writeEvent_);
    event_del(deadline_);
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
  if (fd_ >= 0 && deadline_ != nullptr) {
    armDeadline(idleSinceMs_);  // the idle deadline start() set (or the handler's, if earlier)
  }
}

bool Connection::start(const ServerLimits& limits) {
  limits_ = limits;  // fd_ is non-blocking already (accept4 with SOCK_NONBLOCK)
  const std::size_t stride = eventStride();
  unsigned char* block = inlineEvents_;
  if (stride > kInlineEventBytes) {
    eventBlock_.reset(new unsigned char[3 * stride]);
    block = eventBlock_.get();
  }
  readEvent_ = reinterpret_cast<event*>(block);
  writeEvent_ = reinterpret_cast<event*>(block + stride);
  deadline_ = reinterpret_cast<event*>(block + 2 * stride);
  if (event_assign(readEvent_, server_->base(), fd_, EV_READ | EV_PERSIST, &Connection::onReadable,
                   this) != 0 ||
      event_assign(writeEvent_, server_->base(), fd_, EV_WRITE | EV_PERSIST,
                   &Connection::onWritable, this) != 0 ||
      event_assign(deadline_, server_->base(), -1, 0, &Connection::onDeadline, this) != 0) {
    eventBlock_.reset();
    readEvent_ = writeEvent_ = deadline_ = nullptr;
    return false;
  }
  // The first idle deadline, counted from the connect time; armed by setHandler(), so that a
  // handler setting an earlier deadline of its own costs one timer update, not two.
  phaseDeadlineMs_ = deadlineAfter(idleSinceMs_, limits_.idleTimeout);
  updateReadEvent();
  return true;
}

void Connection::readFirst() {
  if (fd_ >= 0 && handler_) {
    onReadable(fd_, EV_READ, this);
    if (fd_ >= 0 && input_.empty()) {
      input_.release(0);  // nothing came: a connection that stays silent holds no buffer
    }
  }
}

std::size_t Connection::queuedOutputBytes() const {
  return output_ != nullptr ? evbuffer_get_length(output_) : 0;
}

bool Connection::isIdle() const {
  return fd_ >= 0 && phase_ == Phase::kIdle && queuedOutputBytes() == 0;
}

void Connection::enterPhase(Phase phase, std::chrono::seconds timeout) {
  phase_ = phase;
  requestArmPending_ = false;
  if (deadline_ == nullptr) {
    return;
  }
  const std::int64_t now = monotonicMs();
  if (phase == Phase::kIdle) {
    idleSinceMs_ = now;
  }
  phaseDeadlineMs_ = deadlineAfter(now, timeout);
  ++phaseEntries_;
  armedForPhase_ = false;  // whatever the timer holds now, it is not this phase's deadline
  if (phaseDeadlineMs_ == 0 || (armedForMs_ != 0 && armedForMs_ <= phaseDeadlineMs_)) {
    return;  // nothing due, or the timer fires first and onDeadline() re-arms for the rest
  }
  if (handlerDeadlineMs_ != 0 && handlerDeadlineMs_ <= phaseDeadlineMs_) {
    armDeadline(now);  // the handler's deadline comes first
    return;
  }
  // This phase's deadline comes first: a plain libevent timeout, counted from the loop's time
  // like every timeout of the loop (the deadlines of requests that arrived in one wake-up fall
  // due together), and trusted when it fires.
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count());
  event_add(deadline_, &tv);
  armedForMs_ = phaseDeadlineMs_;
  armedForPhase_ = true;
}

void Connection::setHandlerDeadline(std::int64_t atMs) {
  if (fd_ < 0 || deadline_ == nullptr) {
    return;
  }
  handlerDeadlineMs_ = atMs;
  // Before setHandler() (the handler being made), setHandler() arms the timer.
  if (handler_ && atMs != 0 && (armedForMs_ == 0 || atMs < armedForMs_)) {
    armDeadline(monotonicMs());
  }
}

void Connection::armDeadline(std::int64_t nowMs) {
  std::int64_t target = phaseDeadlineMs_;
  if (handlerDeadlineMs_ != 0 && (target == 0 || handlerDeadlineMs_ < target)) {
    target = handlerDeadlineMs_;
  }
  if (target == 0 || (armedForMs_ != 0 && armedForMs_ <= target)) {
    return;  // nothing due, or the timer fires first and onDeadline() re-arms for the rest
  }
  // One millisecond more: the clock read here is truncated to the millisecond, and the timer
  // must not fire before the deadline (onDeadline() would only re-arm it).
  const std::int64_t waitMs = std::max<std::int64_t>(target - nowMs, 0) + 1;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(waitMs / 1000);
  tv.tv_usec = static_cast<suseconds_t>((waitMs % 1000) * 1000);
  event_add(deadline_, &tv);
  armedForMs_ = target;
  armedForPhase_ = false;
}

void Connection::updateReadEvent() {
  if (fd_ < 0) {
    return;
  }
  const bool want = !closing_ && !handlerPaused_ && !outputBlocked_;
  if (want && !reading_) {
    event_add(readEvent_, nullptr);
    reading_ = true;
  } else if (!want && reading_) {
    event_del(readEvent_);
    reading_ = false;
  }
}

bool Connection::handlerMidRequest() {
  if (!handler_) {
    return false;
  }
  // Guarded like runGuarded() without its std::function: this runs once per request.
  try {
    return handler_->midRequest();
  } catch (const std::exception& e) {
    logError(std::string("midRequest: unexpected exception: ") + e.what());
  } catch (...) {
    logError("midRequest: unexpected exception");
  }
  return false;
}

void Connection::settle() {
  if (fd_ < 0) {
    return;
  }
  const std::size_t queued = queuedOutputBytes();
  bool unblocked = false;
  if (!outputBlocked_ && queued > limits_.maxOutputBytes) {
    outputBlocked_ = true;
    enterPhase(Phase::kDraining, limits_.writeTimeout);
  } else if (outputBlocked_ && queued <= limits_.maxOutputBytes / 2) {
    outputBlocked_ = false;
    unblocked = true;
  }
  if (closing_) {
    if (phase_ != Phase::kDraining) {
      enterPhase(Phase::kDraining, limits_.writeTimeout);
    }
  } else if (!outputBlocked_) {
    if (!input_.empty() || handlerMidRequest()) {
      if (phase_ != Phase::kRequest || requestArmPending_) {
        // A request whose first byte came before the output cleared: its clock starts now.
        enterPhase(Phase::kRequest, limits_.requestTimeout);
      }
    } else {
      // The request is complete: the idle clock starts again.
      input_.release(kInputKeepBytes);
      enterPhase(Phase::kIdle, limits_.idleTimeout);
      lastActivityMs_ = idleSinceMs_;
      sentInDispatch_ = false;
    }
  }
  if (sentInDispatch_) {
    lastActivityMs_ = monotonicMs();  // the reply send() left undated
    sentInDispatch_ = false;
  }
  updateReadEvent();
  // Pipelined requests held back while the output was blocked: serve them from the loop.
  if (unblocked && reading_ && !input_.empty()) {
    event_active(readEvent_, EV_READ, 0);
  }
}

void Connection::send(std::string_view reply) {
  if (fd_ < 0 || reply.empty()) {
    return;
  }
  if (dispatching_) {
    sentInDispatch_ = true;  // dated once by settle() after the handler returns
  } else {
    lastActivityMs_ = monotonicMs();
  }
  if (queuedOutputBytes() == 0) {
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
      writeUsed_ = true;
      event_active(writeEvent_, EV_WRITE, 0);
    }
  }
  if (!queueOutput(reply)) {
    // Out of memory: the reply cannot be kept; close from the loop (onWritable finds nothing
    // queued and closes), not from inside the handler's call stack.
    logError("connection from " + peer_ + ": no memory to queue a reply; closing");
    closing_ = true;
    updateReadEvent();
    writeUsed_ = true;
    event_active(writeEvent_, EV_WRITE, 0);
    return;
  }
  writeUsed_ = true;
  event_add(writeEvent_, nullptr);
  if (!outputBlocked_ && queuedOutputBytes() > limits_.maxOutputBytes) {
    outputBlocked_ = true;
    enterPhase(Phase::kDraining, limits_.writeTimeout);
    updateReadEvent();
  }
}

bool Connection::queueOutput(std::string_view bytes) {
  if (output_ == nullptr) {
    output_ = evbuffer_new();
    if (output_ == nullptr) {
      return false;
    }
  }
  return evbuffer_add(output_, bytes.data(), bytes.size()) == 0;
}

void Connection::closeAfterWrite() {
  if (fd_ < 0) {
    return;
  }
  closing_ = true;
  if (queuedOutputBytes() == 0) {
    close();  // takes every event off the loop
    return;
  }
  updateReadEvent();
  enterPhase(Phase::kDraining, limits_.writeTimeout);
}

void Connection::close() {
  if (fd_ < 0) {
    return;
  }
  auto self = shared_from_this();  // we may be erased from the server's table below
  event_del(readEvent_);
  if (writeUsed_) {
    event_del(writeEvent_);
  }
  event_del(deadline_);
  armedForMs_ = 0;
  armedForPhase_ = false;
  ::close(fd_);
  fd_ = -1;
  reading_ = false;
  if (handler_) {
    if (!runGuarded("onClose", [&] { handler_->onClose(*this); })) {
      server_->countConnectionError("exception");
    }
  }
  server_->forget(this);
}

void Connection::closeForError(const char* reason, const std::string& logLine) {
  if (fd_ < 0) {
    return;
  }
  logWarning(logLine);
  server_->countConnectionError(reason);
  close();
}

void Connection::pauseReading() {
  handlerPaused_ = true;
  updateReadEvent();
}

void Connection::resumeReading() {
  if (fd_ < 0 || !handlerPaused_) {
    return;
  }
  handlerPaused_ = false;
  updateReadEvent();
  // Bytes may already be buffered (a pipelined request): hand them over from the loop.
  if (reading_ && !input_.empty()) {
    event_active(readEvent_, EV_READ, 0);
  }
}

void Connection::dispatchInput() {
  if (closing_ || !handler_) {
    input_.consume(input_.size());
    return;
  }
  bool ok = true;
  dispatching_ = true;
  try {
    handler_->onData(*this, input_);
  } catch (const std::exception& e) {
    ok = false;
    closeForError("exception", "closing connection from " + peer_ +
                                   ": unexpected exception in the request handler: " + e.what());
  } catch (...) {
    ok = false;
    closeForError("exception",
                  "closing connection from " + peer_ + ": unexpected exception in the handler");
  }
  dispatching_ = false;
  if (!ok || fd_ < 0) {
    return;
  }
  if (!closing_ && input_.size() > limits_.maxInputBytes) {
    closeForError("input_limit", "closing connection from " + peer_ + ": more than " +
                                     std::to_string(limits_.maxInputBytes) +
                                     " bytes of unprocessed input");
    return;
  }
  settle();
}

void Connection::onReadable(int fd, short what, void* arg) {
  (void)what;
  auto* c = static_cast<Connection*>(arg);
  auto self = c->shared_from_this();
  if (c->fd_ < 0) {
    return;
  }
  if (c->outputBlocked_ || c->handlerPaused_ || c->closing_) {
    return;  // an activation queued before reading was switched off
  }
  const bool wasIdle = c->phase_ == Phase::kIdle && c->input_.empty();
  // Straight into the input buffer: at most maxInputBytes are left unconsumed after the handler
  // ran (else the connection is closed), so it holds at most that plus one read.
  char* tail = c->input_.prepare(kReadChunk);
  ssize_t n = ::read(fd, tail, kReadChunk);
  if (n > 0) {
    if (wasIdle) {
      // The first byte of a request: the whole request must be in by requestTimeout, counted
      // from now. settle() arms that deadline if the request is still incomplete after the
      // handler ran (nothing runs on the loop in between).
      c->phase_ = Phase::kRequest;
      c->requestArmPending_ = true;
    }
    c->input_.commit(static_cast<std::size_t>(n));
    c->dispatchInput();
    if (c->fd_ >= 0 && c->requestArmPending_) {
      c->enterPhase(Phase::kRequest, c->limits_.requestTimeout);  // settle() did not run
    }
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    // A resumeReading() wake-up with nothing new on the socket: serve what is buffered.
    if (!c->input_.empty()) {
      c->dispatchInput();
    }
    return;
  }
  if (n == 0) {
    if (c->handler_ && !c->closing_) {
      const std::size_t unconsumed = c->input_.size();
      if (!runGuarded("onEof", [&] { c->handler_->onEof(*c, unconsumed); })) {
        c->server_->countConnectionError("exception");
      }
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
  if (c->fd_ < 0) {
    return;
  }
  while (c->queuedOutputBytes() > 0) {
    int n = evbuffer_write(c->output_, fd);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        break;  // still writable later: the event stays armed
      }
      logDebug("connection from " + c->peer_ + ": write: " + std::strerror(errno));
      c->close();
      return;
    }
    if (n == 0) {
      break;
    }
  }
  if (c->queuedOutputBytes() == 0) {
    event_del(c->writeEvent_);
    if (c->closing_) {
      c->close();
      return;
    }
  }
  if (c->outputBlocked_) {
    c->settle();
  }
}

void Connection::onDeadline(int, short, void* arg) {
  auto* c = static_cast<Connection*>(arg);
  auto self = c->shared_from_this();
  if (c->fd_ < 0) {
    return;
  }
  c->armedForMs_ = 0;
  const bool phaseDue = c->armedForPhase_;
  const std::uint64_t phaseEntry = c->phaseEntries_;
  c->armedForPhase_ = false;
  std::int64_t now = monotonicMs();
  if (c->handlerDeadlineMs_ != 0 && now >= c->handlerDeadlineMs_) {
    c->handlerDeadlineMs_ = 0;  // the handler sets a new one if it wants one
    if (c->handler_ && !runGuarded("onDeadline", [&] { c->handler_->onDeadline(*c); })) {
      c->closeForError("exception", "closing connection from " + c->peer_ +
                                        ": unexpected exception in the handler");
    }
    if (c->fd_ < 0) {
      return;
    }
    now = monotonicMs();
  }
  const bool due = c->phaseDeadlineMs_ != 0 &&
                   ((phaseDue && phaseEntry == c->phaseEntries_) || now >= c->phaseDeadlineMs_);
  if (!due) {
    c->armDeadline(now);  // fired for the handler, or early for a phase begun later
    return;
  }
  switch (c->phase_) {
    case Phase::kIdle:
      logInfo("closing idle connection from " + c->peer_);
      c->server_->countConnectionError("idle_timeout");
      c->close();
      return;
    case Phase::kRequest:
      c->closeForError("request_timeout",
                       "closing connection from " + c->peer_ + ": request not complete after " +
                           std::to_string(c->limits_.requestTimeout.count()) + " s");
      return;
    case Phase::kDraining:
      c->closeForError("write_timeout", "closing connection from " + c->peer_ + ": " +
                                            std::to_string(c->queuedOutputBytes()) +
                                            " bytes of replies not read within " +
                                            std::to_string(c->limits_.writeTimeout.count()) + " s");
      return;
  }
}

}  // namespace relaykit

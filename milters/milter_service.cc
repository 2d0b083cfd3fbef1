// SPDX-License-Identifier: Apache-2.0
// milter_service.cc: the milter Service and its per-connection handler; see milter_service.h.
#include "milters/milter_service.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <thread>

#include "common/server/logging.h"
#include "milters/milter_callbacks.h"
#include "milters/milter_protocol.h"
#include "milters/milter_session.h"

namespace relaykit::milter {

namespace {

using Clock = std::chrono::steady_clock;

// Test hook: RELAYKIT_MILTER_FAULT=slow-sign holds every signing result on its worker thread for
// kSlowSignDelay, so a test can see that other sessions are answered meanwhile.
constexpr auto kSlowSignDelay = std::chrono::seconds(2);
bool slowSign() {
  static const bool slow = [] {
    const char* v = std::getenv("RELAYKIT_MILTER_FAULT");
    return v != nullptr && std::string(v) == "slow-sign";
  }();
  return slow;
}

// At most one "sessions busy" line per this interval.
constexpr auto kFullLogInterval = std::chrono::seconds(10);

std::string seconds(std::chrono::seconds s) {
  return std::to_string(s.count()) + " s";
}

// Delayed-ACK ("pingpong") mode: a reply of ours carries the ACK of the command it answers.
void setDelayedAck(int fd) {
  int off = 0;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &off, sizeof(off));
}

// Sends the pending ACK now (Postfix writes reply-less commands back to back; with Nagle on its
// side, its next write would wait for our delayed ACK), then back to delayed-ACK mode.
void quickAck(int fd) {
  int on = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
  setDelayedAck(fd);
}

}  // namespace

// What one connection's protocol needs, reused by the next connection (MilterService keeps the
// spares): Postfix opens a milter connection per SMTP session, and building the decoder, session,
// filter and their buffers afresh each time cost more than the rest of the connection.
struct SessionParts {
  SessionParts()
      : session(&filter), timerMemory(new unsigned char[event_get_struct_event_size()]) {}
  SessionParts(const SessionParts&) = delete;
  SessionParts& operator=(const SessionParts&) = delete;

  // Back to the state of new parts: nothing of the previous connection stays visible.
  void reset() {
    session.disconnected();  // tells the filter, if the connection ended without QUIT
    session.reset();
    filter.reset(nullptr);
    decoder.reset();
    out.clear();
  }

  MilterPacketDecoder decoder;
  RelaykitFilter filter;
  MilterSession session;
  std::string out;                               // the replies of one burst
  std::unique_ptr<unsigned char[]> timerMemory;  // the connection's timer (event_assign)
};

class MilterConnection : public ConnectionHandler {
 public:
  MilterConnection(MilterService* service, Connection& conn)
      : service_(service),
        conn_(conn.weak()),
        peer_(conn.peer()),
        tcp_(conn.peer() != "unix"),
        parts_(service->takeParts()),
        decoder_(parts_->decoder),
        filter_(parts_->filter),
        session_(parts_->session),
        out_(parts_->out),
        started_(Clock::now()),
        lastActive_(started_) {
    timer_ = reinterpret_cast<event*>(parts_->timerMemory.get());
    if (evtimer_assign(timer_, conn.base(), &MilterConnection::onTimer, this) != 0) {
      timer_ = nullptr;
    }
    if (tcp_) {
      setDelayedAck(conn.fd());
    }
    armTimer();
  }

  ~MilterConnection() override {
    if (timer_ != nullptr) {
      event_del(timer_);
    }
    service_->recycleParts(std::move(parts_));
  }

  MilterConnection(const MilterConnection&) = delete;
  MilterConnection& operator=(const MilterConnection&) = delete;

  void onData(Connection& conn, InputBuffer& input) override {
    if (phase_ == Phase::kWaiting || done_) {
      return;  // read again once a slot is granted
    }
    try {
      process(conn, input);
    } catch (const std::exception& e) {
      // Nothing may throw across the event loop: this connection ends, the daemon goes on.
      logError("closing milter connection from " + peer_ + ": internal error: " + e.what());
      closeReason_ = "error";
      done_ = true;
      conn.close();
    }
  }

  void onEof(Connection& conn, std::size_t unconsumed) override {
    (void)conn;
    if (!done_) {
      if (unconsumed > 0 || decoder_.inProgress()) {
        logInfo("milter connection from " + peer_ + " closed in the middle of a packet");
      }
      closeReason_ = "eof";
    }
  }

  void onClose(Connection& conn) override {
    (void)conn;
    if (timer_ != nullptr) {
      event_del(timer_);
    }
    service_->forget(this);
    session_.disconnected();
    if (service_->stopping() && !done_) {
      closeReason_ = "stop";
    }
    service_->release(this);
    service_->countClose(closeReason_);
  }

  // A slot became free for this waiting session: answer its first packet and read on.
  void grant() {
    phase_ = Phase::kServing;
    lastActive_ = Clock::now();  // its wait is not idleness
    std::shared_ptr<Connection> conn = conn_.lock();
    if (!conn || !conn->isOpen()) {
      return;
    }
    out_.clear();
    try {
      handle(pendingCommand_, pendingData_);
    } catch (const std::exception& e) {
      logError("closing milter connection from " + peer_ + ": internal error: " + e.what());
      closeReason_ = "error";
      done_ = true;
    }
    std::string().swap(pendingData_);
    if (!out_.empty()) {
      conn->send(out_);
    }
    if (done_) {
      closeSoon_ = true;  // from the loop: never close one connection inside another's close
      event_active(timer_, EV_TIMEOUT, 0);
      return;
    }
    conn->resumeReading();
    armTimer();
  }

  // The signature of the message this session waits for (loop thread): send the held
  // modifications, the signatures and the verdict, then read on.
  void signatureReady(StatusOr<std::vector<std::string>> result) {
    std::shared_ptr<Connection> conn = conn_.lock();
    if (!conn || !conn->isOpen() || !session_.awaitingEndOfMessage()) {
      return;
    }
    filter_.setSignResult(std::move(result));
    out_.clear();
    try {
      session_.resumeEndOfMessage(&out_);
      afterMessage();
    } catch (const std::exception& e) {
      logError("closing milter connection from " + peer_ + ": internal error: " + e.what());
      end("error");
    }
    lastActive_ = Clock::now();
    if (!out_.empty()) {
      conn->send(out_);
    }
    if (done_) {
      conn->closeAfterWrite();
      return;
    }
    conn->resumeReading();  // serves what arrived meanwhile (nothing, from Postfix)
  }

  bool serving() const { return phase_ == Phase::kServing; }
  Clock::time_point lastActive() const { return lastActive_; }
  // Idle since before `cutoff`, between messages, and not already ending.
  bool evictable(Clock::time_point cutoff) const {
    return phase_ == Phase::kServing && !done_ && !session_.inMessage() && !decoder_.inProgress() &&
           lastActive_ < cutoff;
  }
  // Gives the slot up: closes the connection now (onClose releases the slot).
  void evict() {
    std::shared_ptr<Connection> conn = conn_.lock();
    if (!conn || !conn->isOpen()) {
      return;
    }
    logInfo("closing milter connection from " + peer_ + ": idle for " + seconds(kEvictIdleAfter) +
            " or more while every session is busy (max_sessions)");
    closeReason_ = "evicted";
    done_ = true;
    conn->close();
  }

 private:
  enum class Phase { kNew, kWaiting, kServing };

  void process(Connection& conn, InputBuffer& input) {
    lastActive_ = Clock::now();
    const std::string_view data = input.view();
    std::size_t used = 0;
    out_.clear();
    while (used < data.size() && !done_ && !session_.awaitingEndOfMessage()) {
      used += decoder_.feed(data.substr(used));
      if (decoder_.state() == MilterPacketDecoder::State::kError) {
        logWarning("closing milter connection from " + peer_ + ": " + decoder_.error());
        end("error");
        break;
      }
      if (decoder_.state() == MilterPacketDecoder::State::kNeedMore) {
        break;
      }
      if (phase_ == Phase::kNew) {
        if (!service_->admit(this)) {
          // Hold the first packet unanswered until a slot is free; read nothing more meanwhile.
          phase_ = Phase::kWaiting;
          pendingCommand_ = decoder_.command();
          pendingData_.assign(decoder_.data());
          waitingSince_ = Clock::now();
          conn.pauseReading();
          armTimer();
          break;
        }
        phase_ = Phase::kServing;
      }
      handle(decoder_.command(), decoder_.data());
    }
    input.consume(used);
    if (!done_ && session_.awaitingEndOfMessage()) {
      startSigning(conn);
    }
    flush(conn);
    if (!done_) {
      if (decoder_.inProgress()) {
        if (!packetPending_) {
          packetPending_ = true;
          packetSince_ = Clock::now();
          armTimer();
        }
      } else {
        packetPending_ = false;
      }
    }
  }

  // The filter left a signing job: off to the pool; this session reads nothing until
  // signatureReady().
  void startSigning(Connection& conn) {
    std::optional<dkim::SignJob> job = filter_.takeSignJob();
    if (job && service_->submitSign(this, std::move(*job))) {
      conn.pauseReading();
      return;
    }
    filter_.setSignResult(Status::error(job ? "signing queue full" : "no signing job"));
    session_.resumeEndOfMessage(&out_);
    afterMessage();
  }

  void afterMessage() {
    if (endAfterMessage_ && !session_.inMessage() && !done_) {
      logInfo("closing milter connection from " + peer_ + ": session older than " +
              seconds(kMaxSessionTime));
      done_ = true;
      closeReason_ = "timeout";
    }
  }

  void handle(char command, std::string_view data) {
    if (session_.handle(command, data, &out_) == MilterSession::Next::kClose) {
      done_ = true;
      if (!session_.error().empty()) {
        logWarning("closing milter connection from " + peer_ + ": " + session_.error());
        closeReason_ = "error";
      } else {
        closeReason_ = "quit";
      }
      return;
    }
    afterMessage();
  }

  void end(const char* reason) {
    done_ = true;
    closeReason_ = reason;
  }

  // Sends what this burst produced in one write; on TCP, acknowledges a burst that needed no
  // reply at once. Closes after the write when the session is over.
  void flush(Connection& conn) {
    if (!out_.empty()) {
      conn.send(out_);
    } else if (tcp_ && conn.isOpen()) {
      quickAck(conn.fd());
    }
    if (done_) {
      conn.closeAfterWrite();
    }
  }

  void armTimer() {
    if (timer_ == nullptr) {
      return;
    }
    Clock::time_point deadline = started_ + kMaxSessionTime;
    if (phase_ == Phase::kNew) {
      deadline = std::min(deadline, started_ + kFirstPacketTimeout);
    } else if (phase_ == Phase::kWaiting) {
      deadline = std::min(deadline, waitingSince_ + kSlotWaitTimeout);
    }
    if (packetPending_) {
      deadline = std::min(deadline, packetSince_ + kPacketTimeout);
    }
    auto wait = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
    if (wait.count() < 0) {
      wait = std::chrono::microseconds(0);
    }
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(wait.count() / 1000000);
    tv.tv_usec = static_cast<suseconds_t>(wait.count() % 1000000);
    event_add(timer_, &tv);
  }

  static void onTimer(evutil_socket_t, short, void* arg) {
    static_cast<MilterConnection*>(arg)->expire();
  }

  void expire() {
    std::shared_ptr<Connection> conn = conn_.lock();
    if (!conn || !conn->isOpen()) {
      return;
    }
    if (closeSoon_) {
      conn->closeAfterWrite();
      return;
    }
    const Clock::time_point now = Clock::now();
    std::string why;
    if (phase_ == Phase::kNew && now >= started_ + kFirstPacketTimeout) {
      why = "no milter command within " + seconds(kFirstPacketTimeout);
    } else if (phase_ == Phase::kWaiting && now >= waitingSince_ + kSlotWaitTimeout) {
      why = "no free session within " + seconds(kSlotWaitTimeout) + " (max_sessions)";
    } else if (packetPending_ && decoder_.inProgress() && now >= packetSince_ + kPacketTimeout) {
      why = "packet incomplete after " + seconds(kPacketTimeout);
    } else if (now >= started_ + kMaxSessionTime) {
      if (session_.inMessage()) {
        endAfterMessage_ = true;  // ended after this message's end
      } else {
        why = "session older than " + seconds(kMaxSessionTime);
      }
    }
    if (!why.empty()) {
      logInfo("closing milter connection from " + peer_ + ": " + why);
      closeReason_ = "timeout";
      done_ = true;
      conn->close();
      return;
    }
    if (!endAfterMessage_) {
      armTimer();
    }
  }

  MilterService* service_;
  std::weak_ptr<Connection> conn_;
  std::string peer_;
  bool tcp_;
  std::unique_ptr<SessionParts> parts_;  // given back to the service when this connection ends
  MilterPacketDecoder& decoder_;
  RelaykitFilter& filter_;
  MilterSession& session_;
  std::string& out_;
  Phase phase_ = Phase::kNew;
  char pendingCommand_ = 0;
  std::string pendingData_;
  event* timer_ = nullptr;
  Clock::time_point started_;
  Clock::time_point lastActive_;  // the last burst of bytes
  Clock::time_point waitingSince_{};
  Clock::time_point packetSince_{};
  bool packetPending_ = false;
  bool endAfterMessage_ = false;
  bool done_ = false;
  bool closeSoon_ = false;
  const char* closeReason_ = "eof";
};

MilterService::MilterService() = default;

MilterService::~MilterService() {
  pool_.reset();  // its last callbacks post into done_
  if (doneEvent_ != nullptr) {
    event_free(doneEvent_);
  }
  if (doneFd_ >= 0) {
    ::close(doneFd_);
  }
}

bool MilterService::submitSign(MilterConnection* c, dkim::SignJob job) {
  if (!pool_) {
    return false;
  }
  const std::uint64_t ticket = nextTicket_++;
  const bool queued =
      pool_->submit(std::move(job), [this, ticket](StatusOr<std::vector<std::string>> result) {
        // Worker thread: post only.
        if (slowSign()) {
          std::this_thread::sleep_for(kSlowSignDelay);
        }
        {
          std::lock_guard<std::mutex> lock(doneMutex_);
          done_.emplace_back(ticket, std::move(result));
        }
        const std::uint64_t one = 1;
        ssize_t n = ::write(doneFd_, &one, sizeof(one));
        (void)n;
      });
  if (queued) {
    signing_[ticket] = c;
    ticketOf_[c] = ticket;
  }
  return queued;
}

void MilterService::forget(MilterConnection* c) {
  auto it = ticketOf_.find(c);
  if (it != ticketOf_.end()) {
    signing_.erase(it->second);
    ticketOf_.erase(it);
  }
}

void MilterService::onSigned(int fd, short what, void* arg) {
  (void)what;
  std::uint64_t count = 0;
  ssize_t n = ::read(fd, &count, sizeof(count));
  (void)n;
  static_cast<MilterService*>(arg)->deliverSigned();
}

void MilterService::deliverSigned() {
  std::vector<std::pair<std::uint64_t, StatusOr<std::vector<std::string>>>> results;
  {
    std::lock_guard<std::mutex> lock(doneMutex_);
    results.swap(done_);
  }
  for (auto& [ticket, result] : results) {
    auto it = signing_.find(ticket);
    if (it == signing_.end()) {
      continue;  // the connection closed meanwhile
    }
    MilterConnection* c = it->second;
    signing_.erase(it);
    ticketOf_.erase(c);
    c->signatureReady(std::move(result));
  }
}

bool MilterService::configure(const std::shared_ptr<const Config>& config, Diagnostics* diags,
                              bool install) {
  std::shared_ptr<const MilterConfig> compiled;
  if (install) {
    std::lock_guard<std::mutex> lock(pendingMutex_);
    if (pendingFor_ == config.get()) {
      compiled = std::move(pending_);
    }
    pendingFor_ = nullptr;
    pending_.reset();
  }
  if (!compiled) {
    compiled = parseMilterConfig(config, diags);
  }
  if (!compiled) {
    if (configured_) {
      logError("reload: configuration refused; the previous one keeps serving");
    }
    return false;
  }
  if (!install) {
    if (configured_) {
      std::lock_guard<std::mutex> lock(pendingMutex_);
      pendingFor_ = config.get();
      pending_ = compiled;
    }
    return true;
  }
  if (!configured_) {
    maxSessions_ = static_cast<std::size_t>(compiled->maxSessions);
    configured_ = true;
  } else {
    if (static_cast<std::size_t>(compiled->maxSessions) != maxSessions_) {
      logWarning("reload: max_sessions changed; a restart is needed for it to take effect");
    }
    logInfo("reload: configuration loaded");
  }
  setActiveConfig(std::move(compiled));
  return true;
}

Status MilterService::start(event_base* base, MetricsRegistry* metrics) {
  initMilterMetrics(metrics);
  doneFd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (doneFd_ < 0) {
    return Status::error("eventfd for the DKIM signing pool failed");
  }
  doneEvent_ = event_new(base, doneFd_, EV_READ | EV_PERSIST, &MilterService::onSigned, this);
  if (doneEvent_ == nullptr || event_add(doneEvent_, nullptr) != 0) {
    return Status::error("cannot watch the DKIM signing pool's eventfd");
  }
  // Each session has at most one job out, so a queue of max_sessions is never full.
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  pool_ = std::make_unique<dkim::SignPool>(static_cast<int>(std::min(cpus, kMilterSignWorkersMax)),
                                           std::max<std::size_t>(maxSessions_, 1));
  activeGauge_ = &metrics
                      ->gauge("relaykit_milter_sessions",
                              "Milter sessions being served (at most milter.max_sessions)")
                      .get();
  waitingGauge_ =
      &metrics->gauge("relaykit_milter_sessions_waiting", "Milter sessions waiting for a slot")
           .get();
  closed_ = &metrics->counter("relaykit_milter_sessions_closed_total",
                              "Milter connections closed, by reason", {"reason"});
  if (std::getenv("RELAYKIT_MILTER_FAULT") != nullptr) {
    logWarning("RELAYKIT_MILTER_FAULT is set: a test hook that fails messages on purpose");
  }
  started_ = true;
  return Status::ok();
}

void MilterService::stop() {
  stopping_ = true;
}

Health MilterService::health() const {
  if (!started_ || stopping_) {
    return Health::unavailable("not accepting connections");
  }
  if (active_ >= maxSessions_) {
    return Health::unavailable("saturated: " + std::to_string(active_) +
                               " sessions busy (max_sessions), " + std::to_string(waiting_.size()) +
                               " waiting");
  }
  return Health::ok();
}

ServerLimits MilterService::limits() const {
  ServerLimits limits;
  limits.idleTimeout = kSessionIdleTimeout;
  // Each burst is consumed whole (a partial packet moves into the decoder), so unconsumed input
  // is at most what a waiting session sent after its first packet.
  limits.maxInputBytes = kMaxMilterPacketBytes + kMilterLengthBytes;
  limits.maxConnections = maxSessions_ + std::max(maxSessions_, kMinWaitingConnections);
  return limits;
}

std::unique_ptr<SessionParts> MilterService::takeParts() {
  if (spareParts_.empty()) {
    return std::make_unique<SessionParts>();
  }
  std::unique_ptr<SessionParts> parts = std::move(spareParts_.back());
  spareParts_.pop_back();
  parts->filter.reset(activeConfig());  // as a new filter starts
  return parts;
}

void MilterService::recycleParts(std::unique_ptr<SessionParts> parts) {
  if (!parts) {
    return;
  }
  parts->reset();  // now, not when taken: the previous session's data goes with its connection
  if (spareParts_.size() < kSpareSessionParts) {
    spareParts_.push_back(std::move(parts));
  }
}

std::unique_ptr<ConnectionHandler> MilterService::newConnection(Connection& conn) {
  return std::make_unique<MilterConnection>(this, conn);
}

bool MilterService::admit(MilterConnection* c) {
  // An idle session's slot is taken back first; its release may go to an earlier waiter.
  while (active_ >= maxSessions_ && evictIdle()) {
  }
  if (active_ < maxSessions_) {
    ++active_;
    serving_.insert(c);
    if (activeGauge_ != nullptr) {
      activeGauge_->set(static_cast<double>(active_));
    }
    return true;
  }
  waiting_.push_back(c);
  if (waitingGauge_ != nullptr) {
    waitingGauge_->set(static_cast<double>(waiting_.size()));
  }
  warnFull();
  return false;
}

void MilterService::release(MilterConnection* c) {
  if (!c->serving()) {
    auto it = std::find(waiting_.begin(), waiting_.end(), c);
    if (it != waiting_.end()) {
      waiting_.erase(it);
    }
  } else if (serving_.erase(c) > 0 && active_ > 0) {
    --active_;
    // The slot goes to the longest-waiting session (unless the daemon is stopping).
    if (!stopping_ && !waiting_.empty()) {
      MilterConnection* next = waiting_.front();
      waiting_.pop_front();
      ++active_;
      serving_.insert(next);
      next->grant();
    }
  }
  if (activeGauge_ != nullptr) {
    activeGauge_->set(static_cast<double>(active_));
    waitingGauge_->set(static_cast<double>(waiting_.size()));
  }
}

void MilterService::countClose(const char* reason) {
  if (closed_ == nullptr) {
    return;
  }
  for (const auto& [known, counter] : closedByReason_) {
    if (known == reason) {
      counter->inc();
      return;
    }
  }
  Counter& counter = closed_->labels({reason});
  closedByReason_.emplace_back(reason, &counter);
  counter.inc();
}

bool MilterService::evictIdle() {
  const Clock::time_point cutoff = Clock::now() - kEvictIdleAfter;
  MilterConnection* oldest = nullptr;
  for (MilterConnection* c : serving_) {
    if (c->evictable(cutoff) && (oldest == nullptr || c->lastActive() < oldest->lastActive())) {
      oldest = c;
    }
  }
  if (oldest == nullptr) {
    return false;
  }
  oldest->evict();
  return true;
}

void MilterService::warnFull() {
  const auto now = Clock::now();
  if (now - lastFullLog_ >= kFullLogInterval) {
    lastFullLog_ = now;
    logWarning("milter: " + std::to_string(maxSessions_) +
               " sessions busy (max_sessions): new Postfix connections wait; " +
               std::to_string(waiting_.size()) + " waiting");
  }
}

}  // namespace relaykit::milter

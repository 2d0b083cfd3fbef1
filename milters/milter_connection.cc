// SPDX-License-Identifier: Apache-2.0
// milter_connection.cc: one milter connection; see milter_connection.h.
#include "milters/milter_connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <utility>

#include "common/server/logging.h"
#include "milters/milter_service.h"

namespace relaykit::milter {
namespace {

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

SessionParts::SessionParts() : session(&filter) {}

void SessionParts::reset() {
  session.disconnected();  // tells the filter, if the connection ended without QUIT
  session.reset();
  filter.reset(nullptr);
  decoder.reset();
  out.clear();
}

MilterConnection::MilterConnection(MilterService* service, Connection& conn)
    : service_(service),
      conn_(conn.weak()),
      connection_(conn),
      peer_(conn.peer()),
      tcp_(conn.peer() != "unix"),
      parts_(service->takeParts()),
      decoder_(parts_->decoder),
      filter_(parts_->filter),
      session_(parts_->session),
      out_(parts_->out),
      started_(std::chrono::milliseconds(conn.connectedMs())) {
  if (tcp_) {
    setDelayedAck(conn.fd());
  }
  armTimer(conn);
}

MilterConnection::~MilterConnection() {
  service_->recycleParts(std::move(parts_));
}

void MilterConnection::onData(Connection& conn, InputBuffer& input) {
  if (phase_ == Phase::kWaiting || done_) {
    return;  // read again once a slot is granted
  }
  try {
    process(conn, input);
  } catch (const std::exception& e) {
    // Nothing may throw across the event loop: this connection ends, the daemon goes on.
    endForInternalError(e);
    conn.close();
  }
}

void MilterConnection::endForInternalError(const std::exception& e) {
  logError("closing milter connection from " + peer_ + ": internal error: " + e.what());
  closeReason_ = "error";
  done_ = true;
}

void MilterConnection::onEof(Connection& conn, std::size_t unconsumed) {
  (void)conn;
  if (!done_) {
    if (unconsumed > 0 || decoder_.inProgress()) {
      logInfo("milter connection from " + peer_ + " closed in the middle of a packet");
    }
    closeReason_ = "eof";
  }
}

void MilterConnection::onClose(Connection& conn) {
  (void)conn;
  service_->forget(this);
  session_.disconnected();
  if (service_->stopping() && !done_) {
    closeReason_ = "stop";
  }
  service_->release(this);
  service_->countClose(closeReason_);
}

void MilterConnection::grant() {
  phase_ = Phase::kServing;  // its wait is not idleness: the reply below dates the connection
  std::shared_ptr<Connection> conn = conn_.lock();
  if (!conn || !conn->isOpen()) {
    return;
  }
  out_.clear();
  try {
    handle(pendingCommand_, pendingData_);
  } catch (const std::exception& e) {
    endForInternalError(e);
  }
  std::string().swap(pendingData_);
  if (!out_.empty()) {
    conn->send(out_);
  }
  if (done_) {
    closeSoon_ = true;  // from the loop: never close one connection inside another's close
    conn->setHandlerDeadline(Connection::steadyMs(Clock::now()));
    return;
  }
  conn->resumeReading();
  armTimer(*conn);
}

void MilterConnection::signatureReady(StatusOr<std::vector<std::string>> result) {
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
  if (!out_.empty()) {
    conn->send(out_);  // dates the connection's activity
  }
  if (done_) {
    conn->closeAfterWrite();
    return;
  }
  conn->resumeReading();  // serves what arrived meanwhile (nothing, from Postfix)
}

bool MilterConnection::evictable(std::int64_t cutoffMs) const {
  return phase_ == Phase::kServing && !done_ && !session_.inMessage() && !decoder_.inProgress() &&
         lastActiveMs() < cutoffMs;
}

void MilterConnection::evict() {
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

void MilterConnection::process(Connection& conn, InputBuffer& input) {
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
        armTimer(conn);
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
        armTimer(conn);
      }
    } else {
      packetPending_ = false;
    }
  }
}

void MilterConnection::startSigning(Connection& conn) {
  std::optional<dkim::SignJob> job = filter_.takeSignJob();
  if (job && service_->submitSign(this, std::move(*job))) {
    conn.pauseReading();
    return;
  }
  filter_.setSignResult(Status::error(job ? "signing queue full" : "no signing job"));
  session_.resumeEndOfMessage(&out_);
  afterMessage();
}

void MilterConnection::afterMessage() {
  if (endAfterMessage_ && !session_.inMessage() && !done_) {
    logInfo("closing milter connection from " + peer_ + ": session older than " +
            seconds(kMaxSessionTime));
    done_ = true;
    closeReason_ = "timeout";
  }
}

void MilterConnection::handle(char command, std::string_view data) {
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

void MilterConnection::end(const char* reason) {
  done_ = true;
  closeReason_ = reason;
}

void MilterConnection::flush(Connection& conn) {
  if (!out_.empty()) {
    conn.send(out_);
  } else if (tcp_ && conn.isOpen()) {
    quickAck(conn.fd());
  }
  if (done_) {
    conn.closeAfterWrite();
  }
}

void MilterConnection::armTimer(Connection& conn) {
  Clock::time_point deadline = started_ + kMaxSessionTime;
  if (phase_ == Phase::kNew) {
    deadline = std::min(deadline, started_ + kFirstPacketTimeout);
  } else if (phase_ == Phase::kWaiting) {
    deadline = std::min(deadline, waitingSince_ + kSlotWaitTimeout);
  }
  if (packetPending_) {
    deadline = std::min(deadline, packetSince_ + kPacketTimeout);
  }
  conn.setHandlerDeadline(Connection::steadyMs(deadline));
}

void MilterConnection::onDeadline(Connection& conn) {
  if (!conn.isOpen()) {
    return;
  }
  if (closeSoon_) {
    conn.closeAfterWrite();
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
    conn.close();
    return;
  }
  if (!endAfterMessage_) {
    armTimer(conn);
  }
}

}  // namespace relaykit::milter

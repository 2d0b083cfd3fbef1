// SPDX-License-Identifier: Apache-2.0
// milter_connection.h: one milter connection on the shared skeleton (a ConnectionHandler): the
// packet decoder, session and filter of that connection, its slot in MilterService's
// max_sessions, its limits in time (first packet, slot wait, packet, session age: kept on the
// connection's one timer), signing hand-off and TCP acknowledgements. The protocol state lives
// in SessionParts, which MilterService keeps for the next connection when this one ends
// (docs/milter-engine.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/server/connection.h"
#include "common/status.h"
#include "milters/milter_callbacks.h"
#include "milters/milter_protocol.h"
#include "milters/milter_session.h"

namespace relaykit::milter {

class MilterService;

// What one connection's protocol needs, reused by the next connection (MilterService keeps the
// spares): Postfix opens a milter connection per SMTP session, and building the decoder, session,
// filter and their buffers afresh each time cost more than the rest of the connection.
struct SessionParts {
  SessionParts();
  SessionParts(const SessionParts&) = delete;
  SessionParts& operator=(const SessionParts&) = delete;

  // Back to the state of new parts: nothing of the previous connection stays visible.
  void reset();

  MilterPacketDecoder decoder;
  RelaykitFilter filter;
  MilterSession session;
  std::string out;  // the replies of one burst
};

class MilterConnection : public ConnectionHandler {
 public:
  using Clock = std::chrono::steady_clock;

  MilterConnection(MilterService* service, Connection& conn);
  ~MilterConnection() override;
  MilterConnection(const MilterConnection&) = delete;
  MilterConnection& operator=(const MilterConnection&) = delete;
  void onData(Connection& conn, InputBuffer& input) override;
  void onEof(Connection& conn, std::size_t unconsumed) override;
  void onClose(Connection& conn) override;
  // The deadline armTimer() set: closes the connection when one of its limits has passed.
  void onDeadline(Connection& conn) override;

  // A slot became free for this waiting session: answer its first packet and read on.
  void grant();

  // The signature of the message this session waits for (loop thread): send the held
  // modifications, the signatures and the verdict, then read on.
  void signatureReady(StatusOr<std::vector<std::string>> result);
  bool serving() const { return phase_ == Phase::kServing; }
  // When its connection last completed a burst of input or sent a reply (monotonic ms,
  // Connection::lastActivityMs()).
  std::int64_t lastActiveMs() const { return connection_.lastActivityMs(); }
  // Idle since before `cutoffMs` (Connection::steadyMs()), between messages, and not already
  // ending.
  bool evictable(std::int64_t cutoffMs) const;
  // Gives the slot up: closes the connection now (onClose releases the slot).
  void evict();
  static constexpr std::size_t kNotServing = static_cast<std::size_t>(-1);

 private:
  friend class MilterService;  // keeps servingIndex_
  enum class Phase { kNew, kWaiting, kServing };
  // Its place in the service's list of sessions holding a slot (kNotServing: none).
  std::size_t servingIndex_ = kNotServing;
  void process(Connection& conn, InputBuffer& input);

  // The filter left a signing job: off to the pool; this session reads nothing until
  // signatureReady().
  void startSigning(Connection& conn);
  void afterMessage();
  void handle(char command, std::string_view data);
  void end(const char* reason);
  // An exception out of the protocol handling: logged, the connection ends (reason "error").
  void endForInternalError(const std::exception& e);

  // Sends what this burst produced in one write; on TCP, acknowledges a burst that needed no
  // reply at once. Closes after the write when the session is over.
  void flush(Connection& conn);
  // Sets the connection's handler deadline to the earliest of this session's limits (first
  // packet, slot wait, packet, session age): one timer per connection, the Connection's.
  void armTimer(Connection& conn);

  MilterService* service_;
  std::weak_ptr<Connection> conn_;
  const Connection& connection_;  // owns this handler: outlives it
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
  Clock::time_point started_;
  Clock::time_point waitingSince_{};
  Clock::time_point packetSince_{};
  bool packetPending_ = false;
  bool endAfterMessage_ = false;
  bool done_ = false;
  bool closeSoon_ = false;
  const char* closeReason_ = "eof";
};

}  // namespace relaykit::milter

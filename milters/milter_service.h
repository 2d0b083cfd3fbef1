// SPDX-License-Identifier: Apache-2.0
// milter_service.h: relaykit-milter as a Service of the shared daemon skeleton
// (common/server/daemon.h): one event loop serves every milter connection, each a
// MilterPacketDecoder feeding a MilterSession with a RelaykitFilter.
//
// Guarantees:
//  - each read burst is decoded and answered in one pass: every reply it produces leaves in one
//    send(2) (TCP_NODELAY is on for TCP); on TCP, a burst that needs no reply (MAIL, headers,
//    QUIT...) is acknowledged at once (TCP_QUICKACK), while replies carry the ACK of the command
//    they answer (delayed-ACK mode is set at accept): docs/milter-performance.md;
//  - sessions are bounded: at most milter.max_sessions are served at once (a session takes its
//    slot with its first packet; later ones wait, not read, up to kSlotWaitTimeout, logged as
//    "sessions busy (max_sessions)", unless a session idle for kEvictIdleAfter between messages
//    gives its slot up); a connection must send its first packet within
//    kFirstPacketTimeout, finish a packet within kPacketTimeout, stay idle at most
//    kSessionIdleTimeout, and live at most kMaxSessionTime (ended between messages);
//  - a malformed packet, a packet over kMaxMilterPacketBytes or a command outside the protocol
//    closes that connection only (logged); Postfix then applies milter_default_action;
//  - /health: 503 before start and while stopping ("not accepting"), and while every slot is
//    busy ("saturated"); 200 otherwise.
//  - DKIM signatures are made on a SignPool (kSignWorkers threads), never on the loop: the
//    session that waits for its signature sends nothing and reads nothing until it returns
//    (Postfix waits for the end-of-message reply); every other session goes on.
// Everything runs on the loop thread; configure() may run on another thread (reload); the pool's
// workers only post results back (an eventfd read by the loop).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/server/connection.h"
#include "common/server/metrics.h"
#include "milters/dkim_sign_pool.h"
#include "milters/milter_config.h"

namespace relaykit::milter {

// Postfix writes its first packet (SMFIC_OPTNEG) as soon as it has connected.
inline constexpr std::chrono::seconds kFirstPacketTimeout{10};
// A session waiting for a slot; Postfix's milter_command_timeout (30 s) gives up first.
inline constexpr std::chrono::seconds kSlotWaitTimeout{60};
// A packet begun must be complete within Postfix's milter_content_timeout (300 s): a client
// sending one byte at a time cannot keep a session forever.
inline constexpr std::chrono::seconds kPacketTimeout{300};
// No byte for this long: Postfix's smtpd waits at most smtpd_timeout (300 s) per SMTP command.
inline constexpr std::chrono::seconds kSessionIdleTimeout{600};
// A whole session (one SMTP session of Postfix); ended at a message boundary.
inline constexpr std::chrono::seconds kMaxSessionTime{3600};
// Connections beyond milter.max_sessions that may wait for a slot (or negotiate) at once.
inline constexpr std::size_t kMinWaitingConnections = 256;
// Every slot busy and a new session waiting: a session that has sent nothing for this long and
// is between messages gives its slot up (closed), so sessions left idle cannot keep Postfix out.
// Postfix applies milter_default_action to that SMTP session's next message (tempfail by
// default: the client retries).
inline constexpr std::chrono::seconds kEvictIdleAfter{30};

// Threads that make DKIM signatures (RSA-4096: ~4 ms each); the body is hashed on the loop.
inline constexpr unsigned kMilterSignWorkersMax = 4;

// Spare session state kept for the next connection (Postfix opens one per SMTP session), at most.
inline constexpr std::size_t kSpareSessionParts = 64;

class MilterConnection;
struct SessionParts;

class MilterService : public Service {
 public:
  MilterService();
  ~MilterService() override;
  MilterService(const MilterService&) = delete;
  MilterService& operator=(const MilterService&) = delete;

  DaemonSection section() const override { return DaemonSection::kMilter; }
  bool configure(const std::shared_ptr<const Config>& config, Diagnostics* diags,
                 bool install) override;
  Status start(event_base* base, MetricsRegistry* metrics) override;
  void stop() override;
  Health health() const override;
  ServerLimits limits() const override;
  std::unique_ptr<ConnectionHandler> newConnection(Connection& conn) override;

  // Used by connections: take a slot (true) or join the waiting line (false); give it back.
  bool admit(MilterConnection* c);
  void release(MilterConnection* c);
  bool stopping() const { return stopping_; }
  // Counts a closed connection by reason (quit, eof, timeout, error, stop).
  void countClose(const char* reason);
  // Signs `job` off the loop; the connection's signatureReady() is called on the loop with the
  // result, unless it has closed by then. False when the pool refuses the job (nothing called).
  bool submitSign(MilterConnection* c, dkim::SignJob job);
  // The connection is going away: a result still coming for it is dropped.
  void forget(MilterConnection* c);
  // A connection's protocol state (decoder, session, filter, buffers, timer memory): a spare one
  // reset to new, or a new one; given back when the connection is destroyed.
  std::unique_ptr<SessionParts> takeParts();
  void recycleParts(std::unique_ptr<SessionParts> parts);

  std::size_t activeSessions() const { return active_; }
  std::size_t waitingSessions() const { return waiting_.size(); }

 private:
  void warnFull();
  static void onSigned(int fd, short what, void* arg);
  void deliverSigned();
  // Closes the session idle longest (at least kEvictIdleAfter, between messages); false if none.
  bool evictIdle();

  std::size_t maxSessions_ = kDefaultMilterSessions;  // from the first configuration
  // Set once by the first configure(install=true), before any reload worker exists.
  std::atomic<bool> configured_{false};
  // A reload compiles on the skeleton's worker (configure install=false); the loop thread then
  // installs that same compiled snapshot instead of parsing the file a second time.
  std::mutex pendingMutex_;
  const Config* pendingFor_ = nullptr;
  std::shared_ptr<const MilterConfig> pending_;
  bool started_ = false;
  bool stopping_ = false;
  std::size_t active_ = 0;
  std::deque<MilterConnection*> waiting_;
  // The sessions holding a slot, each at its servingIndex (removed by swapping the last in).
  std::vector<MilterConnection*> serving_;
  void addServing(MilterConnection* c);
  bool removeServing(MilterConnection* c);
  std::chrono::steady_clock::time_point lastFullLog_{};
  Gauge* activeGauge_ = nullptr;
  Gauge* waitingGauge_ = nullptr;
  CounterFamily* closed_ = nullptr;  // reason: quit | eof | timeout | error | stop | evicted
  // closed_'s counter per reason (the reasons are string literals): no label lookup per close.
  std::vector<std::pair<const char*, Counter*>> closedByReason_;
  // Signing: jobs out, by ticket; results posted by the workers, read on the loop.
  std::unique_ptr<dkim::SignPool> pool_;
  std::uint64_t nextTicket_ = 1;
  std::unordered_map<std::uint64_t, MilterConnection*> signing_;
  std::unordered_map<MilterConnection*, std::uint64_t> ticketOf_;
  std::mutex doneMutex_;
  std::vector<std::pair<std::uint64_t, StatusOr<std::vector<std::string>>>> done_;
  int doneFd_ = -1;  // eventfd
  event* doneEvent_ = nullptr;
  std::vector<std::unique_ptr<SessionParts>> spareParts_;  // at most kSpareSessionParts
};

}  // namespace relaykit::milter

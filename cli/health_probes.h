// SPDX-License-Identifier: Apache-2.0
// health_probes.h: the network and Postfix probes of `relaykit health`, each bounded by a
// deadline (non-blocking sockets + poll; external programs through run_program.h) and returning
// errors as values. The parsers (relayhost, postqueue -j, HTTP status) are pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/endpoint.h"
#include "common/status.h"

namespace relaykit {

// Longest line read from a probed server (SMTP replies are at most 512 bytes by RFC 5321).
inline constexpr std::size_t kMaxProbeLineBytes = 4096;
// Most bytes read of an HTTP /health answer.
inline constexpr std::size_t kMaxProbeHttpBytes = 64 * 1024;
// Most lines of one multi-line SMTP reply.
inline constexpr int kMaxSmtpReplyLines = 100;

using Deadline = std::chrono::steady_clock::time_point;

// A connected socket whose every operation fails once the deadline has passed.
class ProbeSocket {
 public:
  // inet (host name or address; every address of a name is tried in turn) or unix.
  static StatusOr<ProbeSocket> connect(const Endpoint& endpoint, Deadline deadline);
  ProbeSocket(ProbeSocket&& other) noexcept;
  ProbeSocket& operator=(ProbeSocket&&) = delete;
  ProbeSocket(const ProbeSocket&) = delete;
  ~ProbeSocket();

  Status sendAll(std::string_view data);
  // One line without its CR LF; an error at EOF before a newline, on timeout, or when longer
  // than kMaxProbeLineBytes.
  StatusOr<std::string> readLine();
  // Everything until the peer closes (at most `max` bytes).
  StatusOr<std::string> readAll(std::size_t max);

 private:
  ProbeSocket(int fd, Deadline deadline) : fd_(fd), deadline_(deadline) {}
  Status waitFor(short events);
  int fd_ = -1;
  Deadline deadline_;
  std::string buffered_;
};

// GET /health over HTTP/1.0: the status code and the body's first line.
struct HttpHealth {
  int status = 0;
  std::string body;
};
StatusOr<HttpHealth> fetchHealth(const Endpoint& endpoint, Deadline deadline);

// Redis: AUTH (when `password` is not empty), SELECT `database` (when not 0), PING. The error
// message never contains the password.
struct RedisTarget {
  Endpoint endpoint;
  std::string password;
  int database = 0;
};
Status pingRedis(const RedisTarget& target, Deadline deadline);

// SMTP: the greeting (220), EHLO `helo` (250), whether STARTTLS is offered, QUIT.
struct SmtpProbe {
  std::string greeting;  // the greeting's first line
  bool startTls = false;
};
StatusOr<SmtpProbe> probeSmtp(const Endpoint& endpoint, const std::string& helo, Deadline deadline);

// relayhost as main.cf writes it: "[host]:port", "[host]", "host:port", "host" (the first of a
// list); port 25 when absent. Brackets only turn off MX lookups in Postfix; the probe connects
// to the host's own address either way. nullopt for an empty or unparsable value.
std::optional<Endpoint> parseRelayhost(std::string_view value);

// What `postqueue -j` tells: messages in the queue, how many in the deferred queue, the oldest
// arrival_time (seconds since the epoch), when any.
struct QueueStats {
  std::int64_t size = 0;
  std::int64_t deferred = 0;
  std::optional<std::int64_t> oldestArrival;
};
// nullopt when a line is not a postqueue -j record.
std::optional<QueueStats> parsePostqueueJson(std::string_view text);

}  // namespace relaykit

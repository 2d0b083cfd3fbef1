// SPDX-License-Identifier: Apache-2.0
// listener.h: opening listen sockets for Postfix-style endpoints (see common/endpoint.h).
//
// inet endpoints: SO_REUSEADDR, IPV6_V6ONLY for v6 addresses, non-blocking, close-on-exec.
// unix endpoints: a stale socket file (nobody accepting) is removed first; a live one is an error
// ("already in use"); the socket gets socket_mode / socket_owner. Errors are values whose message
// names the endpoint and the system error. Accepted TCP connections should get setTcpNoDelay():
// every relaykit reply is one write, and Nagle plus delayed ACK costs ~40 ms per reply otherwise.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/endpoint.h"
#include "common/status.h"

namespace relaykit {

// listen(2) backlog: Postfix opens up to ~100 connections per service at once.
inline constexpr int kListenBacklog = 511;

struct ListenOptions {
  std::optional<std::uint32_t> socketMode;  // chmod of a unix socket
  std::string socketOwner;                  // "user" or "user:group": chown of a unix socket
};

// Binds and listens. Returns the listening fd (the caller owns it).
StatusOr<int> openListener(const Endpoint& endpoint, const ListenOptions& options = {});
// The local port of a bound inet socket (useful with port 0), 0 for others.
std::uint16_t localPort(int fd);
// TCP_NODELAY on a connected TCP socket; a no-op on unix sockets (getsockname(2) tells which).
void setTcpNoDelay(int fd);
// TCP_NODELAY on a socket the caller knows is TCP (the family accept(2) returned).
void setTcpNoDelayOnTcp(int fd);

// chown(2)s a unix socket to `owner` ("user", "user:group" or ":group"; a user alone also sets
// the user's primary group). Errors name the unknown user/group or the failed chown.
Status setSocketOwner(const std::string& path, const std::string& owner);
// Connects to an endpoint (blocking; for tests and the CLI). Returns the fd.
StatusOr<int> connectTo(const Endpoint& endpoint);

}  // namespace relaykit

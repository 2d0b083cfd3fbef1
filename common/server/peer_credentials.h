// SPDX-License-Identifier: Apache-2.0
// peer_credentials.h: who is at the other end of an accepted socket, from the kernel.
//
// - unix sockets: SO_PEERCRED (the uid of the process that connected);
// - loopback TCP (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104): the owning uid of the peer's socket,
//   looked up with one NETLINK_SOCK_DIAG inet_diag exact request (the peer's socket is on this
//   host, so the kernel knows who owns it; unprivileged processes may ask, as `ss -e` does);
// - other TCP peers: only their address.
// A lookup that fails (the peer already closed, no inet_diag support) gives PeerIdentity::unknown()
// for a local peer; never an error the caller must handle. Not thread-safe: one PeerResolver per
// loop thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>

#include "common/server/connection_limits.h"

namespace relaykit {

class PeerResolver {
 public:
  PeerResolver() = default;
  ~PeerResolver();
  PeerResolver(const PeerResolver&) = delete;
  PeerResolver& operator=(const PeerResolver&) = delete;

  // The identity of the peer of the connected socket `fd` (peer address `addr`, as accept(2)
  // returned it). `local` (may be null): the socket's own address when the caller knows it (a
  // listener bound to one address accepts every connection on that address), saving a
  // getsockname(2).
  PeerIdentity resolve(int fd, const sockaddr* addr, socklen_t len,
                       const sockaddr_storage* local = nullptr);

  // The owning uid of the loopback TCP socket whose address is `peer` and which is connected to
  // `local` (both AF_INET or AF_INET6); nullopt when the kernel does not say.
  std::optional<uid_t> loopbackTcpUid(const sockaddr_storage& peer, const sockaddr_storage& local);

 private:
  int netlink_ = -1;  // opened on first use, kept
  bool netlinkFailed_ = false;
  std::uint32_t sequence_ = 0;
};

// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool isLoopbackAddress(const sockaddr* addr);

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// peer_credentials.cc: SO_PEERCRED and the sock_diag exact lookup; see peer_credentials.h.
#include "common/server/peer_credentials.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace relaykit {

namespace {

// How long one sock_diag answer may take before the peer is treated as unknown (it is a local
// kernel round trip of a few microseconds; the bound only protects the loop).
constexpr int kSockDiagTimeoutMs = 50;
// Receive buffer for one sock_diag answer (one inet_diag_msg plus headers, or an error).
constexpr std::size_t kSockDiagAnswerBytes = 1024;

// An IPv4-mapped IPv6 address as its IPv4 form; other addresses unchanged.
sockaddr_storage unmapV4(const sockaddr_storage& in) {
  if (in.ss_family != AF_INET6) {
    return in;
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&in);
  if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
    return in;
  }
  sockaddr_storage out{};
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out);
  in4->sin_family = AF_INET;
  in4->sin_port = in6->sin6_port;
  std::memcpy(&in4->sin_addr, &in6->sin6_addr.s6_addr[12], 4);
  return out;
}

void fillSockId(const sockaddr_storage& ss, __be16* port, __be32* addr) {
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    *port = in->sin_port;
    std::memcpy(addr, &in->sin_addr, 4);
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    *port = in6->sin6_port;
    std::memcpy(addr, &in6->sin6_addr, 16);
  }
}

std::string numericAddress(const sockaddr* addr) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, buf, sizeof buf);
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

}  // namespace

bool isLoopbackAddress(const sockaddr* addr) {
  if (addr == nullptr) {
    return false;
  }
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
      return true;
    }
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

PeerResolver::~PeerResolver() {
  if (netlink_ >= 0) {
    ::close(netlink_);
  }
}

PeerIdentity PeerResolver::resolve(int fd, const sockaddr* addr, socklen_t len,
                                   const sockaddr_storage* knownLocal) {
  sockaddr_storage local{};
  const bool unixPeer = addr != nullptr && len >= static_cast<socklen_t>(sizeof(sa_family_t)) &&
                        addr->sa_family == AF_UNIX;
  if (unixPeer) {
    local.ss_family = AF_UNIX;  // accept(2) on a unix socket says so: no getsockname(2)
  } else if (knownLocal != nullptr) {
    local = *knownLocal;
  } else {
    socklen_t localLen = sizeof local;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &localLen) != 0) {
      return PeerIdentity::unknown();
    }
  }
  if (local.ss_family == AF_UNIX) {
    ucred cred{};
    socklen_t credLen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credLen) == 0 && credLen == sizeof cred) {
      return PeerIdentity::user(cred.uid);
    }
    return PeerIdentity::unknown();
  }
  if (addr == nullptr || len <= 0 || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)) {
    return PeerIdentity::unknown();
  }
  if (!isLoopbackAddress(addr)) {
    return PeerIdentity::remote(numericAddress(addr));
  }
  sockaddr_storage peer{};
  std::memcpy(&peer, addr, std::min<std::size_t>(static_cast<std::size_t>(len), sizeof peer));
  if (auto uid = loopbackTcpUid(peer, local)) {
    return PeerIdentity::user(*uid);
  }
  return PeerIdentity::unknown();
}

std::optional<uid_t> PeerResolver::loopbackTcpUid(const sockaddr_storage& peerIn,
                                                  const sockaddr_storage& localIn) {
  const sockaddr_storage peer = unmapV4(peerIn);
  const sockaddr_storage local = unmapV4(localIn);
  if (peer.ss_family != local.ss_family ||
      (peer.ss_family != AF_INET && peer.ss_family != AF_INET6)) {
    return std::nullopt;
  }
  if (netlink_ < 0) {
    if (netlinkFailed_) {
      return std::nullopt;
    }
    netlink_ = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (netlink_ < 0) {
      netlinkFailed_ = true;
      return std::nullopt;
    }
    timeval tv{0, kSockDiagTimeoutMs * 1000};
    setsockopt(netlink_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } message{};
  message.header.nlmsg_len = sizeof message;
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.header.nlmsg_seq = ++sequence_;
  message.request.sdiag_family = static_cast<__u8>(peer.ss_family);
  message.request.sdiag_protocol = IPPROTO_TCP;
  message.request.idiag_states = ~0U;
  // The peer's socket: its source is the peer address, its destination our local address.
  fillSockId(peer, &message.request.id.idiag_sport, message.request.id.idiag_src);
  fillSockId(local, &message.request.id.idiag_dport, message.request.id.idiag_dst);
  message.request.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  message.request.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(netlink_, &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof kernel) != static_cast<ssize_t>(sizeof message)) {
    return std::nullopt;
  }
  alignas(nlmsghdr) char buf[kSockDiagAnswerBytes];
  // Answers to earlier requests that timed out may still be queued: skip other sequence numbers
  // (bounded: the socket holds only what was asked).
  for (int attempt = 0; attempt < 8; ++attempt) {
    ssize_t n = recv(netlink_, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return std::nullopt;
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != message.header.nlmsg_seq) {
        continue;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
          h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
        return std::nullopt;  // NLMSG_ERROR: no such socket (it closed already)
      }
      const auto* diag = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      return static_cast<uid_t>(diag->idiag_uid);
    }
  }
  return std::nullopt;
}

}  // namespace relaykit

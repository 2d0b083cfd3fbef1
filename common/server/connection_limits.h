// SPDX-License-Identifier: Apache-2.0
// connection_limits.h: the pure arithmetic behind the skeleton's connection admission (no
// sockets, no clock of its own): how many connections a daemon may hold given its file-descriptor
// limit, which class a peer falls in, and, when a new connection does not fit, which live
// connection to evict or whether to refuse it. docs/connection-limits.md describes the policy.
//
// Peers are told apart by what the kernel says about them: the uid of a local peer (SO_PEERCRED on
// unix sockets, sock_diag on loopback TCP), else the address of a remote TCP peer. Trusted uids
// (root, the `postfix` user, a daemon's allowed_users) may use the reserved part of the table and
// have no per-peer cap; every other peer shares the rest, capped per uid or per address.
// Guarantees: a trusted peer is never evicted to make room for an untrusted one; only idle
// connections (no request in progress, no queued reply) are evicted, the one idle the longest
// first; every function here is total (no input makes it throw or overflow).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace relaykit {

// File descriptors kept out of the connection budget: listeners, the metrics and admin servers'
// own connection caps (kMaxMetricsConnections, the admin socket's 16), the Redis connection,
// syslog, the sock_diag socket, config and table files read at reload.
inline constexpr std::size_t kFdReserve = 256;
// The smallest connection budget a daemon runs with, whatever its descriptor limit says.
inline constexpr std::size_t kMinConnectionBudget = 16;

// The connection table's caps, derived from ServerLimits and RLIMIT_NOFILE.
struct ConnectionCaps {
  std::size_t total = 0;       // live connections, all peers
  std::size_t reserved = 0;    // part of `total` only trusted peers may use
  std::size_t perUser = 0;     // live connections of one untrusted local uid
  std::size_t perAddress = 0;  // live connections of one remote address
  std::size_t shared() const { return total - reserved; }
};

// Caps for a daemon that wants `configured` connections, `reserved` of them for trusted peers,
// with `fdLimit` descriptors (the soft RLIMIT_NOFILE). total = min(configured, fdLimit -
// kFdReserve), at least kMinConnectionBudget; reserved at most total / 2; the per-peer caps at
// most the shared part.
ConnectionCaps computeConnectionCaps(std::size_t configured, std::size_t reserved,
                                     std::size_t perUser, std::size_t perAddress,
                                     std::uint64_t fdLimit);

// Who is at the other end, as far as the kernel tells.
struct PeerIdentity {
  enum class Kind {
    kUser,     // a local process: uid known (unix socket, or loopback TCP with sock_diag)
    kAddress,  // a remote TCP peer: only its address is known
    kUnknown,  // local, but the uid could not be learnt (sock_diag failed)
  };
  Kind kind = Kind::kUnknown;
  uid_t uid = 0;
  std::string address;  // kAddress: the numeric address (no port)

  static PeerIdentity user(uid_t uid) { return PeerIdentity{Kind::kUser, uid, {}}; }
  static PeerIdentity remote(std::string address) {
    return PeerIdentity{Kind::kAddress, 0, std::move(address)};
  }
  static PeerIdentity unknown() { return PeerIdentity{}; }
  // The key per-peer counts are kept under: "uid:N", "addr:A", or "" (no per-peer cap).
  std::string key() const;
  // For log lines: "uid 65534", "address 192.0.2.1", "unknown local user".
  std::string describe() const;
};

// Which peers are trusted and which are let in at all.
struct PeerPolicy {
  std::vector<uid_t> trustedUids;  // reserved room, no per-peer cap (root is always trusted)
  // When set, only these local uids (and root) are accepted; a peer whose uid cannot be learnt
  // (remote TCP, sock_diag failure) is refused.
  std::optional<std::vector<uid_t>> allowedUids;

  bool isTrusted(const PeerIdentity& peer) const;
  bool isAllowed(const PeerIdentity& peer) const;
};

// What the table holds when a new connection arrives.
struct AdmissionCounts {
  std::size_t total = 0;      // live connections
  std::size_t untrusted = 0;  // live connections of untrusted peers
  std::size_t samePeer = 0;   // live connections under the new peer's key (0 when no key)
};

struct AdmissionDecision {
  enum class Action {
    kAdmit,   // room: take it
    kEvict,   // take it after evicting the oldest idle connection within `scope`
    kRefuse,  // close the new connection
  };
  enum class Scope {
    kAny,        // any idle connection (untrusted ones first)
    kUntrusted,  // idle connections of untrusted peers only
    kSamePeer,   // idle connections of the new peer itself
  };
  Action action = Action::kAdmit;
  Scope scope = Scope::kAny;
  const char* reason = "";  // why not plainly admitted: "total", "shared", "per_peer"
};

// The rule: a trusted peer is admitted while total < caps.total, else it evicts (scope kAny). An
// untrusted peer over its per-peer cap evicts one of its own idle connections (kSamePeer); while
// the shared part is full it evicts an idle untrusted connection (kUntrusted); the caller refuses
// when the scope holds no idle connection. `peerCap` is the new peer's own cap (caps.perUser or
// caps.perAddress), 0 for a peer with no per-peer cap.
AdmissionDecision decideAdmission(const AdmissionCounts& counts, bool trusted, std::size_t peerCap,
                                  const ConnectionCaps& caps);

// One live connection as the eviction choice sees it.
struct EvictionCandidate {
  std::uint64_t id = 0;
  bool idle = false;  // no request in progress, nothing queued to write
  bool trusted = false;
  std::string peerKey;
  std::int64_t idleSinceMs = 0;  // monotonic time of its last activity
};

// The connection to evict for `scope` (the new peer's key for kSamePeer): the idle candidate
// with the oldest idleSinceMs (of equal ones, the lowest id: accepted first), untrusted before
// trusted for kAny; nullopt when none qualifies. The candidates' order does not matter.
std::optional<std::uint64_t> chooseEviction(const std::vector<EvictionCandidate>& candidates,
                                            AdmissionDecision::Scope scope,
                                            const std::string& newPeerKey);

}  // namespace relaykit

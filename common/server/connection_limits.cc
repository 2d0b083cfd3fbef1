// SPDX-License-Identifier: Apache-2.0
// connection_limits.cc: caps arithmetic, admission and eviction choice; see connection_limits.h.
#include "common/server/connection_limits.h"

#include <algorithm>

namespace relaykit {

ConnectionCaps computeConnectionCaps(std::size_t configured, std::size_t reserved,
                                     std::size_t perUser, std::size_t perAddress,
                                     std::uint64_t fdLimit) {
  ConnectionCaps caps;
  std::uint64_t budget = fdLimit > kFdReserve ? fdLimit - kFdReserve : 0;
  std::uint64_t total = std::min<std::uint64_t>(configured, budget);
  total = std::max<std::uint64_t>(total, kMinConnectionBudget);
  caps.total = static_cast<std::size_t>(total);
  caps.reserved = std::min(reserved, caps.total / 2);
  caps.perUser = std::max<std::size_t>(1, std::min(perUser, caps.shared()));
  caps.perAddress = std::max<std::size_t>(1, std::min(perAddress, caps.shared()));
  return caps;
}

std::string PeerIdentity::key() const {
  switch (kind) {
    case Kind::kUser:
      return "uid:" + std::to_string(uid);
    case Kind::kAddress:
      return "addr:" + address;
    case Kind::kUnknown:
      break;
  }
  return std::string();
}

std::string PeerIdentity::describe() const {
  switch (kind) {
    case Kind::kUser:
      return "uid " + std::to_string(uid);
    case Kind::kAddress:
      return "address " + address;
    case Kind::kUnknown:
      break;
  }
  return "unknown local user";
}

bool PeerPolicy::isTrusted(const PeerIdentity& peer) const {
  if (peer.kind != PeerIdentity::Kind::kUser) {
    return false;
  }
  return peer.uid == 0 ||
         std::find(trustedUids.begin(), trustedUids.end(), peer.uid) != trustedUids.end();
}

bool PeerPolicy::isAllowed(const PeerIdentity& peer) const {
  if (!allowedUids) {
    return true;
  }
  if (peer.kind != PeerIdentity::Kind::kUser) {
    return false;
  }
  return peer.uid == 0 ||
         std::find(allowedUids->begin(), allowedUids->end(), peer.uid) != allowedUids->end();
}

AdmissionDecision decideAdmission(const AdmissionCounts& counts, bool trusted, std::size_t peerCap,
                                  const ConnectionCaps& caps) {
  AdmissionDecision d;
  if (trusted) {
    if (counts.total >= caps.total) {
      d.action = AdmissionDecision::Action::kEvict;
      d.scope = AdmissionDecision::Scope::kAny;
      d.reason = "total";
    }
    return d;
  }
  if (peerCap > 0 && counts.samePeer >= peerCap) {
    d.action = AdmissionDecision::Action::kEvict;
    d.scope = AdmissionDecision::Scope::kSamePeer;
    d.reason = "per_peer";
    return d;
  }
  if (counts.untrusted >= caps.shared() || counts.total >= caps.total) {
    d.action = AdmissionDecision::Action::kEvict;
    d.scope = AdmissionDecision::Scope::kUntrusted;
    d.reason = counts.total >= caps.total ? "total" : "shared";
  }
  return d;
}

std::optional<std::uint64_t> chooseEviction(const std::vector<EvictionCandidate>& candidates,
                                            AdmissionDecision::Scope scope,
                                            const std::string& newPeerKey) {
  const EvictionCandidate* best = nullptr;
  auto better = [&](const EvictionCandidate& c) {
    if (best == nullptr) {
      return true;
    }
    if (scope == AdmissionDecision::Scope::kAny && c.trusted != best->trusted) {
      return !c.trusted;  // untrusted first
    }
    if (c.idleSinceMs != best->idleSinceMs) {
      return c.idleSinceMs < best->idleSinceMs;
    }
    return c.id < best->id;  // idle since the same millisecond: the one accepted first
  };
  for (const auto& c : candidates) {
    if (!c.idle) {
      continue;
    }
    if (scope == AdmissionDecision::Scope::kUntrusted && c.trusted) {
      continue;
    }
    if (scope == AdmissionDecision::Scope::kSamePeer &&
        (c.trusted || newPeerKey.empty() || c.peerKey != newPeerKey)) {
      continue;
    }
    if (better(c)) {
      best = &c;
    }
  }
  if (best == nullptr) {
    return std::nullopt;
  }
  return best->id;
}

}  // namespace relaykit

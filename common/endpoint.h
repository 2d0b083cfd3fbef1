// SPDX-License-Identifier: Apache-2.0
// endpoint.h: listen endpoints written as Postfix writes them: "inet:HOST:PORT",
// "inet:[::1]:PORT", "unix:PATH". Pure parsing (no sockets); binding lives in
// common/server/listener.h. Parse errors are values with a message naming the bad text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace relaykit {

struct Endpoint {
  enum class Kind { kInet, kUnix };
  Kind kind = Kind::kInet;
  std::string host;        // kInet: IP address or name, without brackets; empty = all addresses
  std::uint16_t port = 0;  // kInet; 0 = any free port (tests)
  std::string path;        // kUnix

  // "inet:HOST:PORT" / "inet:[V6]:PORT" / "unix:/path". With allowBareHostPort, "HOST:PORT" and
  // "[V6]:PORT" (as in metrics_listen: 127.0.0.1:9441) are accepted as inet too.
  static StatusOr<Endpoint> parse(std::string_view text, bool allowBareHostPort = false);
  // Canonical text: "inet:127.0.0.1:10041", "inet:[::1]:10041", "unix:/path".
  std::string toString() const;
  bool operator==(const Endpoint& other) const {
    return kind == other.kind && host == other.host && port == other.port && path == other.path;
  }
  bool operator!=(const Endpoint& other) const { return !(*this == other); }
};

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// endpoint.cc: parsing of Postfix-style endpoint strings.
#include "common/endpoint.h"

namespace relaykit {

namespace {

// Longest unix socket path sockaddr_un accepts (108 bytes with the terminating NUL on Linux).
constexpr std::size_t kMaxUnixPathBytes = 107;

StatusOr<Endpoint> parseHostPort(std::string_view original, std::string_view rest) {
  auto bad = [&](const std::string& why) {
    return Status::error("invalid endpoint \"" + std::string(original) + "\": " + why);
  };
  Endpoint ep;
  ep.kind = Endpoint::Kind::kInet;
  std::string_view port;
  if (!rest.empty() && rest[0] == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) {
      return bad("missing ']'");
    }
    ep.host = std::string(rest.substr(1, close - 1));
    if (ep.host.empty()) {
      return bad("empty address in brackets");
    }
    if (close + 1 >= rest.size() || rest[close + 1] != ':') {
      return bad("expected :PORT after ']'");
    }
    port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return bad("expected HOST:PORT");
    }
    ep.host = std::string(rest.substr(0, colon));
    if (ep.host.find(':') != std::string::npos) {
      return bad("write IPv6 addresses in brackets, like inet:[::1]:PORT");
    }
    port = rest.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5) {
    return bad("invalid port");
  }
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') {
      return bad("invalid port");
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) {
    return bad("port out of range");
  }
  ep.port = static_cast<std::uint16_t>(value);
  return ep;
}

}  // namespace

StatusOr<Endpoint> Endpoint::parse(std::string_view text, bool allowBareHostPort) {
  constexpr std::string_view kInet = "inet:";
  constexpr std::string_view kUnix = "unix:";
  if (text.substr(0, kUnix.size()) == kUnix) {
    Endpoint ep;
    ep.kind = Kind::kUnix;
    ep.path = std::string(text.substr(kUnix.size()));
    if (ep.path.empty()) {
      return Status::error("invalid endpoint \"" + std::string(text) + "\": empty path");
    }
    if (ep.path.size() > kMaxUnixPathBytes) {
      return Status::error("invalid endpoint \"" + std::string(text) + "\": path longer than " +
                           std::to_string(kMaxUnixPathBytes) + " bytes");
    }
    return ep;
  }
  if (text.substr(0, kInet.size()) == kInet) {
    return parseHostPort(text, text.substr(kInet.size()));
  }
  if (allowBareHostPort) {
    return parseHostPort(text, text);
  }
  return Status::error("invalid endpoint \"" + std::string(text) +
                       "\": expected inet:HOST:PORT, inet:[ADDR]:PORT or unix:PATH");
}

std::string Endpoint::toString() const {
  if (kind == Kind::kUnix) {
    return "unix:" + path;
  }
  if (host.find(':') != std::string::npos) {
    return "inet:[" + host + "]:" + std::to_string(port);
  }
  return "inet:" + host + ":" + std::to_string(port);
}

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// ip_network.h: IPv4/IPv6 addresses and CIDR networks, as written in configuration
// ("10.0.0.0/8", "2001:db8::/32", "192.0.2.1") and as Postfix sends client addresses.
//
// Pure value types; parse functions return a Status error for malformed text (never throw).
// An IPv4 address never matches an IPv6 network and vice versa, except that an IPv4-mapped IPv6
// address ("::ffff:10.1.2.3") is treated as the IPv4 address it carries.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace relaykit {

// The longest address text accepted: an IPv6 address with an embedded IPv4 address in brackets
// (INET6_ADDRSTRLEN is 46 with its NUL).
inline constexpr std::size_t kMaxIpAddressText = 47;

struct IpAddress {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};  // IPv4 in the first 4 bytes

  // Parses "192.0.2.1", "2001:db8::1", "[2001:db8::1]", "::ffff:192.0.2.1" (mapped to IPv4,
  // as Postfix does for client_address). The one parser of the code base: rate-limit keys,
  // client networks in rules and exemptions all use it, so they agree on every address. Text
  // longer than kMaxIpAddressText or holding a NUL byte is invalid (never truncated).
  static StatusOr<IpAddress> parse(std::string_view text);
  std::string toString() const;
  int bitLength() const { return v6 ? 128 : 32; }
  bool operator==(const IpAddress& other) const;
};

struct IpNetwork {
  IpAddress address;  // host bits cleared
  int prefixLength = 0;

  // Parses "ADDR/LEN" or a bare address (a host network). Host bits set below the prefix are
  // cleared silently, as Postfix's mynetworks does not allow them but we only need matching.
  static StatusOr<IpNetwork> parse(std::string_view text);
  // The network of `prefixLength` bits (clamped to the address's length) holding `address`.
  static IpNetwork of(const IpAddress& address, int prefixLength);
  bool contains(const IpAddress& address) const;
  std::string toString() const;
};

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// ip_network.cc: parsing and matching of IP addresses and CIDR networks (inet_pton based).
#include "common/ip_network.h"

#include <arpa/inet.h>

#include <cstring>

namespace relaykit {

StatusOr<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton reads a C string: a NUL inside the text would end it early.
  if (text.empty() || text.size() > kMaxIpAddressText ||
      text.find('\0') != std::string_view::npos) {
    return Status::error("invalid IP address");
  }
  std::string s(text);
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') {
    s = s.substr(1, s.size() - 2);
  }
  IpAddress out;
  in_addr v4{};
  in6_addr v6{};
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), &v4) != 1) {
      return Status::error("invalid IP address \"" + std::string(text) + "\"");
    }
    std::memcpy(out.bytes.data(), &v4, 4);
    return out;
  }
  if (inet_pton(AF_INET6, s.c_str(), &v6) != 1) {
    return Status::error("invalid IP address \"" + std::string(text) + "\"");
  }
  static const std::uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6.s6_addr, kMappedPrefix, sizeof kMappedPrefix) == 0) {
    std::memcpy(out.bytes.data(), v6.s6_addr + 12, 4);
    return out;
  }
  out.v6 = true;
  std::memcpy(out.bytes.data(), v6.s6_addr, 16);
  return out;
}

std::string IpAddress::toString() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf);
  return buf;
}

bool IpAddress::operator==(const IpAddress& other) const {
  return v6 == other.v6 && bytes == other.bytes;
}

namespace {

// Clears every bit of `a` past `prefix`.
void maskTo(IpAddress* a, int prefix) {
  for (int i = 0; i < 16; ++i) {
    int bitsHere = prefix - i * 8;
    if (bitsHere >= 8) {
      continue;
    }
    if (bitsHere <= 0) {
      a->bytes[i] = 0;
    } else {
      a->bytes[i] &= static_cast<std::uint8_t>(0xff << (8 - bitsHere));
    }
  }
}

}  // namespace

StatusOr<IpNetwork> IpNetwork::parse(std::string_view text) {
  std::string_view addr = text;
  std::string_view len;
  auto slash = text.find('/');
  if (slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    len = text.substr(slash + 1);
  }
  auto parsed = IpAddress::parse(addr);
  if (!parsed) {
    return Status::error("invalid network \"" + std::string(text) + "\"");
  }
  IpNetwork net;
  net.address = *parsed;
  net.prefixLength = net.address.bitLength();
  if (slash != std::string_view::npos) {
    if (len.empty() || len.size() > 3) {
      return Status::error("invalid network \"" + std::string(text) + "\"");
    }
    int value = 0;
    for (char c : len) {
      if (c < '0' || c > '9') {
        return Status::error("invalid network \"" + std::string(text) + "\"");
      }
      value = value * 10 + (c - '0');
    }
    // An IPv4-mapped IPv6 network: convert the prefix to its IPv4 meaning.
    if (!net.address.v6 && addr.find(':') != std::string_view::npos) {
      value -= 96;
      if (value < 0) {
        return Status::error("invalid network \"" + std::string(text) + "\"");
      }
    }
    if (value > net.address.bitLength()) {
      return Status::error("invalid prefix length in \"" + std::string(text) + "\"");
    }
    net.prefixLength = value;
  }
  maskTo(&net.address, net.prefixLength);
  return net;
}

IpNetwork IpNetwork::of(const IpAddress& address, int prefixLength) {
  IpNetwork net;
  net.address = address;
  net.prefixLength = prefixLength < 0                     ? 0
                     : prefixLength > address.bitLength() ? address.bitLength()
                                                          : prefixLength;
  maskTo(&net.address, net.prefixLength);
  return net;
}

bool IpNetwork::contains(const IpAddress& a) const {
  if (a.v6 != address.v6) {
    return false;
  }
  IpAddress masked = a;
  maskTo(&masked, prefixLength);
  return masked.bytes == address.bytes;
}

std::string IpNetwork::toString() const {
  return address.toString() + "/" + std::to_string(prefixLength);
}

}  // namespace relaykit

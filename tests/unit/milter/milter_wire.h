// SPDX-License-Identifier: Apache-2.0
// milter_wire.h: what the milter unit tests build packets and read replies with: Postfix's
// offered actions and steps, big-endian u32s, NUL-terminated string lists, and a reply stream
// split into packets by the real decoder.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "milters/milter_protocol.h"

namespace relaykit::milter {

inline constexpr std::uint32_t kPostfixActions = SMFI_CURR_ACTS;
inline constexpr std::uint32_t kPostfixProtocol = SMFI_CURR_PROT;

inline std::string u32(std::uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

inline std::string optneg(std::uint32_t version, std::uint32_t actions, std::uint32_t protocol) {
  return u32(version) + u32(actions) + u32(protocol);
}

inline std::string strings(std::initializer_list<std::string> parts) {
  std::string out;
  for (const std::string& p : parts) {
    out += p;
    out.push_back('\0');
  }
  return out;
}

struct Reply {
  char command;
  std::string data;
};

inline std::vector<Reply> replies(const std::string& out) {
  MilterPacketDecoder d;
  std::vector<Reply> got;
  std::string_view rest = out;
  while (!rest.empty()) {
    rest.remove_prefix(d.feed(rest));
    if (d.state() != MilterPacketDecoder::State::kPacket) {
      ADD_FAILURE() << "undecodable reply";
      break;
    }
    got.push_back({d.command(), std::string(d.data())});
  }
  return got;
}

}  // namespace relaykit::milter

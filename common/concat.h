// SPDX-License-Identifier: Apache-2.0
// concat.h: one string made of several pieces with one allocation (a chain of operator+ makes a
// temporary per piece that outgrows the last). Pure.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>

namespace relaykit {

// The pieces joined, in order.
inline std::string concat(std::initializer_list<std::string_view> pieces) {
  std::size_t size = 0;
  for (std::string_view p : pieces) {
    size += p.size();
  }
  std::string out;
  out.reserve(size);
  for (std::string_view p : pieces) {
    out.append(p.data(), p.size());
  }
  return out;
}

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// ascii.cc: ASCII case helpers (see ascii.h).
#include "common/ascii.h"

namespace relaykit {

std::string toLowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = toLowerAscii(c);
  }
  return out;
}

std::string_view trimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace relaykit

// SPDX-License-Identifier: Apache-2.0
// random_regexp_table.h: a generator of random regexp_table(5) text for property tests: 40 lines
// mixing if/endif (nested, negated), negated rules, rules with a second pattern and flags. Used by
// the Set-vs-linear test and the cross-check against the real postmap.
#pragma once

#include <random>
#include <string>

namespace relaykit {

// Draws one table from `rng` using patterns from atoms[0..natoms). closeIfs appends the missing
// ENDIFs; without it an unclosed IF (a warning, as in Postfix) is part of what gets tested.
inline std::string randomRegexpTable(std::mt19937& rng, const char* const* atoms, int natoms,
                                     bool closeIfs) {
  std::string text;
  int depth = 0;
  for (int i = 0; i < 40; ++i) {
    const int kind = static_cast<int>(rng() % 10);
    const std::string pat = atoms[rng() % natoms];
    if (kind == 0) {
      text += std::string(rng() % 2 ? "if !/" : "if /") + pat + "/\n";
      ++depth;
    } else if (kind == 1 && depth > 0) {
      text += "endif\n";
      --depth;
    } else if (kind == 2) {
      text += "!/" + pat + "/ neg" + std::to_string(i) + "\n";
    } else if (kind == 3) {
      text += "/" + pat + "/!/" + atoms[rng() % natoms] + "/ two" + std::to_string(i) + "\n";
    } else {
      text += "/" + pat + "/" + (rng() % 3 == 0 ? "i" : "") + " r" + std::to_string(i) + "\n";
    }
  }
  while (closeIfs && depth-- > 0) {
    text += "endif\n";
  }
  return text;
}

}  // namespace relaykit

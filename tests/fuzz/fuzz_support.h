// SPDX-License-Identifier: Apache-2.0
// fuzz_support.h: what every fuzz target in tests/fuzz/ shares.
//
// FUZZ_CHECK(cond, what) states a property of the code under test (a round trip, an invariant):
// when it does not hold it prints the property and aborts, which libFuzzer reports as a crash
// and saves the input, and which fails the plain replay build's ctest. FuzzInput splits one fuzz
// input into the pieces a target needs (flag bytes, NUL-separated texts), deterministically, so a
// saved crash input reproduces the same run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond, what)                                                               \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: property violated: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                               \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace relaykit::fuzz {

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}

  // The next byte (0 when the input is exhausted).
  std::uint8_t byte() {
    if (rest_.empty()) {
      return 0;
    }
    std::uint8_t b = static_cast<std::uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  // Text up to the next NUL (consumed, not included), or all that is left.
  std::string_view text() {
    std::size_t nul = rest_.find('\0');
    std::string_view out = rest_.substr(0, nul);
    rest_.remove_prefix(nul == std::string_view::npos ? rest_.size() : nul + 1);
    return out;
  }
  std::string_view rest() {
    std::string_view out = rest_;
    rest_ = std::string_view();
    return out;
  }
  bool empty() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

// "\xNN"-escaped text for messages.
inline std::string printable(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace relaykit::fuzz

// SPDX-License-Identifier: Apache-2.0
// gcra.cc: GCRA arithmetic; see gcra.h. Mirrored by the Lua script in redis_script.h.
//
// Every result is computed without overflow: a cost above max is refused before any increment is
// computed, doubles are converted to integers only through toMicros() (which saturates), and
// additions of TATs saturate at INT64_MAX. Inputs come from the config (bounded), from requests
// (bounded by policy_engine.h) and from the store (which a hostile writer could fill with any
// number): none of them can make the arithmetic undefined.
#include "policyd/gcra.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace relaykit::policy {

namespace {

constexpr std::int64_t kMaxMicros = std::numeric_limits<std::int64_t>::max();

// floor(x) as an integer in [0, kMaxMicros]; NaN is 0.
std::int64_t toMicros(double x) {
  if (!(x > 0)) {
    return 0;
  }
  // 2^63 is exactly representable; every double below it converts without overflow.
  if (x >= 9223372036854775808.0) {
    return kMaxMicros;
  }
  return static_cast<std::int64_t>(std::floor(x));
}

std::int64_t addSaturating(std::int64_t a, std::int64_t b) {
  if (b > 0 && a > kMaxMicros - b) {
    return kMaxMicros;
  }
  if (b < 0 && a < std::numeric_limits<std::int64_t>::min() - b) {
    return std::numeric_limits<std::int64_t>::min();
  }
  return a + b;
}

}  // namespace

std::int64_t gcraIncrement(std::int64_t cost, const RateWindow& window) {
  if (cost <= 0 || window.max <= 0 || window.periodUs <= 0) {
    return 0;
  }
  return toMicros(static_cast<double>(cost) * static_cast<double>(window.periodUs) /
                  static_cast<double>(window.max));
}

GcraOutcome gcraCheck(std::int64_t tatUs, std::int64_t nowUs, std::int64_t cost,
                      const RateWindow& window) {
  GcraOutcome out;
  const std::int64_t base = std::max(tatUs, nowUs);
  if (cost > window.max) {  // never fits: nothing to compute, nothing to store
    out.allowed = false;
    out.newTatUs = base;
    out.retryAfterUs = window.periodUs;
    return out;
  }
  out.newTatUs = addSaturating(base, gcraIncrement(cost, window));
  // newTatUs >= nowUs, so the difference is >= 0; it can only overflow when nowUs < 0.
  const std::int64_t ahead =
      nowUs >= 0
          ? out.newTatUs - nowUs
          : addSaturating(out.newTatUs,
                          nowUs == std::numeric_limits<std::int64_t>::min() ? kMaxMicros : -nowUs);
  out.allowed = ahead <= window.periodUs;
  out.retryAfterUs = out.allowed ? 0 : ahead - window.periodUs;
  return out;
}

std::int64_t gcraRescale(std::int64_t tatUs, std::int64_t nowUs, std::int64_t oldMax,
                         std::int64_t newMax) {
  if (oldMax <= 0 || newMax <= 0 || oldMax == newMax || tatUs <= nowUs) {
    return tatUs;
  }
  const double used = static_cast<double>(tatUs) - static_cast<double>(nowUs);
  return addSaturating(nowUs,
                       toMicros(used * static_cast<double>(oldMax) / static_cast<double>(newMax)));
}

std::int64_t gcraRemaining(std::int64_t tatUs, std::int64_t nowUs, const RateWindow& window) {
  if (window.max <= 0 || window.periodUs <= 0) {
    return 0;
  }
  const double used = std::max(0.0, static_cast<double>(tatUs) - static_cast<double>(nowUs));
  const double perUnit = static_cast<double>(window.periodUs) / static_cast<double>(window.max);
  const std::int64_t usedUnits = toMicros(std::ceil(used / perUnit));
  return std::clamp<std::int64_t>(window.max - std::min(usedUnits, window.max), 0, window.max);
}

}  // namespace relaykit::policy

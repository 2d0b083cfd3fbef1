// gcra.cc: GCRA arithmetic; see gcra.h. Mirrored by the Lua script in redis_script.h.
#include "policyd/gcra.h"

#include <algorithm>
#include <cmath>

namespace relaykit::policy {

std::int64_t gcraIncrement(std::int64_t cost, const RateWindow& window) {
  const double inc = std::floor(static_cast<double>(cost) * static_cast<double>(window.periodUs) /
                                static_cast<double>(window.max));
  return static_cast<std::int64_t>(inc);
}

GcraOutcome gcraCheck(std::int64_t tatUs, std::int64_t nowUs, std::int64_t cost,
                      const RateWindow& window) {
  GcraOutcome out;
  const std::int64_t base = std::max(tatUs, nowUs);
  out.newTatUs = base + gcraIncrement(cost, window);
  if (cost > window.max) {
    out.allowed = false;
    out.retryAfterUs = window.periodUs;
    return out;
  }
  const std::int64_t ahead = out.newTatUs - nowUs;
  out.allowed = ahead <= window.periodUs;
  out.retryAfterUs = out.allowed ? 0 : ahead - window.periodUs;
  return out;
}

std::int64_t gcraRescale(std::int64_t tatUs, std::int64_t nowUs, std::int64_t oldMax,
                         std::int64_t newMax) {
  if (oldMax <= 0 || newMax <= 0 || oldMax == newMax || tatUs <= nowUs) {
    return tatUs;
  }
  const double used = static_cast<double>(tatUs - nowUs);
  return nowUs + static_cast<std::int64_t>(
                     std::floor(used * static_cast<double>(oldMax) / static_cast<double>(newMax)));
}

std::int64_t gcraRemaining(std::int64_t tatUs, std::int64_t nowUs, const RateWindow& window) {
  const std::int64_t used = std::max<std::int64_t>(0, tatUs - nowUs);
  const double perUnit = static_cast<double>(window.periodUs) / static_cast<double>(window.max);
  const auto usedUnits = static_cast<std::int64_t>(std::ceil(static_cast<double>(used) / perUnit));
  return std::clamp<std::int64_t>(window.max - usedUnits, 0, window.max);
}

}  // namespace relaykit::policy

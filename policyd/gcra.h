// SPDX-License-Identifier: Apache-2.0
// gcra.h: rate-limit arithmetic (Generic Cell Rate Algorithm), plain functions over plain values.
//
// A window "max per period" lets a burst of up to `max` units through at once and then `max`
// units per `period` sustained; the state is one number, the theoretical arrival time (TAT, in
// microseconds). Unlike fixed windows, no instant at a window edge ever lets 2x max through.
// The clock is the caller's: every function takes `now`. The same arithmetic is implemented in
// Lua for the Redis store (redis_script.h); both use IEEE doubles for the increment so they agree
// to the microsecond.
#pragma once

#include <cstdint>

namespace relaykit::policy {

struct RateWindow {
  std::int64_t max = 0;       // units (messages, recipients or bytes) per period; > 0
  std::int64_t periodUs = 0;  // > 0
};

struct GcraOutcome {
  bool allowed = false;
  std::int64_t newTatUs = 0;      // the TAT to store if this charge is committed
  std::int64_t retryAfterUs = 0;  // when refused: wait this long before the same cost fits
};

// The TAT increment for `cost` units: floor(cost * period / max), computed in doubles and
// saturated to [0, INT64_MAX] (0 for a cost <= 0).
std::int64_t gcraIncrement(std::int64_t cost, const RateWindow& window);

// Would a charge of `cost` at `nowUs` fit, given the stored `tatUs` (0 when none)?
// A cost of 0 always fits. A cost larger than max never fits (retryAfterUs = period, newTatUs =
// max(tatUs, nowUs): nothing to charge); it is refused before any increment is computed, so any
// cost is safe. TAT arithmetic saturates at INT64_MAX instead of overflowing.
GcraOutcome gcraCheck(std::int64_t tatUs, std::int64_t nowUs, std::int64_t cost,
                      const RateWindow& window);

// A TAT stored under `oldMax` re-expressed for `newMax` (same period): the units used so far are
// kept when a reload changes max. Unchanged when equal or when the TAT has passed.
std::int64_t gcraRescale(std::int64_t tatUs, std::int64_t nowUs, std::int64_t oldMax,
                         std::int64_t newMax);

// Units still available right now (for `relaykit limits show`), 0..max.
std::int64_t gcraRemaining(std::int64_t tatUs, std::int64_t nowUs, const RateWindow& window);

}  // namespace relaykit::policy

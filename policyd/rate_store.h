// SPDX-License-Identifier: Apache-2.0
// rate_store.h: where rate-limit state lives (memory or Redis), behind one asynchronous interface.
//
// A StoreRequest is every limit that applies to one policy request. The store evaluates them all
// against one clock reading and, when `commit` is set and no enforced charge is refused, charges
// them all together (all or nothing; a refused warn-only charge is logged by the caller and not
// charged, as if that mail had been refused). Nothing is charged when commit is false (the RCPT
// stage check). Errors are values: the callback gets a Status when the store could not answer
// (Redis down, timeout); the caller then applies on_store_error.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "policyd/gcra.h"

namespace relaykit::policy {

struct StoreCharge {
  std::string key;                  // store key without the store's prefix: "rl:{digest}:limit"
  std::vector<RateWindow> windows;  // all must fit
  std::int64_t cost = 0;
  bool enforce = true;  // false: warn_only (dry run)
};

struct StoreRequest {
  std::vector<StoreCharge> charges;
  bool commit = false;
};

struct ChargeOutcome {
  bool allowed = true;
  std::int64_t retryAfterUs = 0;  // max over the refused windows
};

struct StoreResult {
  bool committed = false;               // the charges were written
  std::vector<ChargeOutcome> outcomes;  // one per charge, same order
};

// A clock in microseconds since the epoch; tests inject one.
using MicrosClock = std::function<std::int64_t()>;
std::int64_t systemMicros();

// One entry of `relaykit limits show`.
struct WindowState {
  RateWindow window;
  std::int64_t tatUs = 0;
  std::int64_t remaining = 0;    // units available now
  std::int64_t fullResetUs = 0;  // until every unit is available again
};

class RateStore {
 public:
  using Callback = std::function<void(StatusOr<StoreResult>)>;
  virtual ~RateStore() = default;
  // Evaluates `request`; calls `done` exactly once, possibly before returning (memory store) or
  // later from the event loop (Redis store), at the latest after the store's timeout.
  virtual void evaluate(StoreRequest request, Callback done) = 0;
};

// Pure evaluation of one request against stored TATs: shared by the memory store and the tests,
// and mirrored by the Redis Lua script. `tatOf(i, window)` returns the stored TAT of that window
// (by period) of request.charges[i].key, or 0, rescaled (gcraRescale) when it was stored under
// another max.
StoreResult evaluateCharges(
    const StoreRequest& request, std::int64_t nowUs,
    const std::function<std::int64_t(std::size_t, const RateWindow&)>& tatOf,
    std::vector<std::vector<std::int64_t>>* newTats);

}  // namespace relaykit::policy

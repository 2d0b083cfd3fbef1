// SPDX-License-Identifier: Apache-2.0
// rate_store.cc: the all-or-nothing evaluation shared by the stores; see rate_store.h.
#include "policyd/rate_store.h"

#include <algorithm>
#include <chrono>

namespace relaykit::policy {

std::int64_t systemMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

StoreResult evaluateCharges(
    const StoreRequest& request, std::int64_t nowUs,
    const std::function<std::int64_t(std::size_t, const RateWindow&)>& tatOf,
    std::vector<std::vector<std::int64_t>>* newTats) {
  StoreResult result;
  result.outcomes.resize(request.charges.size());
  newTats->resize(request.charges.size());  // emptied, not freed: a caller may reuse them
  for (std::vector<std::int64_t>& tats : *newTats) {
    tats.clear();
  }
  bool blocked = false;
  for (std::size_t i = 0; i < request.charges.size(); ++i) {
    const StoreCharge& charge = request.charges[i];
    ChargeOutcome& outcome = result.outcomes[i];
    for (const RateWindow& window : charge.windows) {
      const GcraOutcome g = gcraCheck(tatOf(i, window), nowUs, charge.cost, window);
      (*newTats)[i].push_back(g.newTatUs);
      if (!g.allowed) {
        outcome.allowed = false;
        outcome.retryAfterUs = std::max(outcome.retryAfterUs, g.retryAfterUs);
      }
    }
    if (!outcome.allowed && charge.enforce) {
      blocked = true;
    }
  }
  result.committed = request.commit && !blocked;
  return result;
}

}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// memory_store.h: the embedded rate-limit store for a single relay (the default).
//
// State lives in this process only: it is lost on restart and not shared with other relays
// (use the Redis store for that). Answers synchronously (the callback runs before evaluate()
// returns). Entries whose every TAT has passed are swept a few hash buckets per evaluation, so
// memory stays proportional to the principals active within their periods and no request pays
// for a whole pass; at most kMaxMemoryStoreKeys keys are kept (when full, one whole pass runs,
// then new principals are refused as a store error: on_store_error decides). Not thread-safe:
// one event loop owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "policyd/rate_store.h"

namespace relaykit::policy {

inline constexpr std::size_t kMaxMemoryStoreKeys = 1000000;

class MemoryStore : public RateStore {
 public:
  explicit MemoryStore(MicrosClock clock = systemMicros, std::size_t maxKeys = kMaxMemoryStoreKeys);
  void evaluate(StoreRequest request, Callback done) override;
  StatusOr<StoreResult> evaluateNow(const StoreRequest& request);

  // For `limits show|reset` and tests.
  std::vector<WindowState> show(const std::string& key,
                                const std::vector<RateWindow>& windows) const;
  // True when a counter existed.
  bool reset(const std::string& key) { return entries_.erase(key) > 0; }
  std::size_t size() const { return entries_.size(); }
  // Counters per limit name (keys are rl:{digest}:LIMIT); only `limit` when not empty.
  std::map<std::string, std::int64_t> countByLimit(const std::string& limit) const;
  // Deletes every counter (of `limit` when not empty); returns how many.
  std::int64_t resetAll(const std::string& limit);

 private:
  struct Entry {
    struct Slot {
      std::int64_t periodUs;
      std::int64_t tatUs;
      std::int64_t max;  // the max the TAT was computed with
    };
    std::vector<Slot> tats;
    std::int64_t expiresUs = 0;  // max TAT
  };
  void sweep(std::int64_t nowUs);
  void sweepBucket(std::size_t bucket, std::int64_t nowUs);

  MicrosClock clock_;
  std::size_t maxKeys_;
  std::unordered_map<std::string, Entry> entries_;
  std::size_t sweepCursor_ = 0;
  std::int64_t lastSweepUs_ = 0;  // clock at the last sweep
  std::int64_t sweepCredit_ = 0;  // bucket-microseconds not yet swept (see sweep())
  std::int64_t lastFullSweepUs_ = INT64_MIN / 2;
  // evaluateNow()'s scratch space, kept so that a decision allocates nothing for it.
  std::vector<Entry*> found_;
  std::vector<std::vector<std::int64_t>> newTats_;
};

}  // namespace relaykit::policy

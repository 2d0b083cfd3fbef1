// memory_store.cc: in-process GCRA state; see memory_store.h.
#include "policyd/memory_store.h"

#include <algorithm>

namespace relaykit::policy {

namespace {
// Hash buckets examined for expired entries per evaluation: the sweep is spread over requests,
// so no request pays for a pass over the whole table.
constexpr std::size_t kSweepBucketsPerCall = 8;
constexpr std::int64_t kFullSweepIntervalUs = 1000000;
}  // namespace

MemoryStore::MemoryStore(MicrosClock clock, std::size_t maxKeys)
    : clock_(std::move(clock)), maxKeys_(maxKeys) {}

void MemoryStore::sweepBucket(std::size_t bucket, std::int64_t nowUs) {
  std::vector<std::string> expired;
  for (auto it = entries_.begin(bucket); it != entries_.end(bucket); ++it) {
    if (it->second.expiresUs <= nowUs) {
      expired.push_back(it->first);
    }
  }
  for (const std::string& key : expired) {
    entries_.erase(key);
  }
}

void MemoryStore::sweep(std::int64_t nowUs) {
  const std::size_t buckets = entries_.bucket_count();
  // Full: one whole pass (at most once a second) before refusing new principals.
  if (entries_.size() >= maxKeys_ && nowUs - lastFullSweepUs_ >= kFullSweepIntervalUs) {
    lastFullSweepUs_ = nowUs;
    for (std::size_t b = 0; b < buckets; ++b) {
      sweepBucket(b, nowUs);
    }
    return;
  }
  for (std::size_t i = 0; i < kSweepBucketsPerCall && !entries_.empty(); ++i) {
    sweepBucket(sweepCursor_++ % buckets, nowUs);
  }
}

StatusOr<StoreResult> MemoryStore::evaluateNow(const StoreRequest& request) {
  const std::int64_t now = clock_();
  sweep(now);
  auto tatOf = [this, now](const std::string& key, const RateWindow& window) -> std::int64_t {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      return 0;
    }
    for (const Entry::Slot& slot : it->second.tats) {
      if (slot.periodUs == window.periodUs) {
        return gcraRescale(slot.tatUs, now, slot.max, window.max);
      }
    }
    return 0;
  };
  std::vector<std::vector<std::int64_t>> newTats;
  StoreResult result = evaluateCharges(request, now, tatOf, &newTats);
  if (!result.committed) {
    return result;
  }
  std::size_t newKeys = 0;
  for (const StoreCharge& charge : request.charges) {
    newKeys += entries_.count(charge.key) == 0 ? 1 : 0;
  }
  if (entries_.size() + newKeys > maxKeys_) {
    return Status::error("memory store full (" + std::to_string(maxKeys_) + " keys)");
  }
  for (std::size_t i = 0; i < request.charges.size(); ++i) {
    const StoreCharge& charge = request.charges[i];
    if (!result.outcomes[i].allowed) {
      continue;  // a refused warn-only charge: not counted
    }
    Entry& entry = entries_[charge.key];
    for (std::size_t w = 0; w < charge.windows.size(); ++w) {
      const RateWindow& window = charge.windows[w];
      const std::int64_t tat = newTats[i][w];
      auto slot =
          std::find_if(entry.tats.begin(), entry.tats.end(),
                       [&window](const Entry::Slot& s) { return s.periodUs == window.periodUs; });
      if (slot == entry.tats.end()) {
        entry.tats.push_back(Entry::Slot{window.periodUs, tat, window.max});
      } else {
        *slot = Entry::Slot{window.periodUs, tat, window.max};
      }
      entry.expiresUs = std::max(entry.expiresUs, tat);
    }
  }
  return result;
}

void MemoryStore::evaluate(StoreRequest request, Callback done) {
  done(evaluateNow(request));
}

std::vector<WindowState> MemoryStore::show(const std::string& key,
                                           const std::vector<RateWindow>& windows) const {
  std::vector<WindowState> out;
  const std::int64_t now = clock_();
  auto it = entries_.find(key);
  for (const RateWindow& window : windows) {
    WindowState state;
    state.window = window;
    if (it != entries_.end()) {
      for (const Entry::Slot& slot : it->second.tats) {
        if (slot.periodUs == window.periodUs) {
          state.tatUs = gcraRescale(slot.tatUs, now, slot.max, window.max);
        }
      }
    }
    state.remaining = gcraRemaining(state.tatUs, now, window);
    state.fullResetUs = std::max<std::int64_t>(0, state.tatUs - now);
    out.push_back(state);
  }
  return out;
}

namespace {

// The limit name of a store key "rl:{digest}:LIMIT" (storeKeyFor).
std::string_view limitOfKey(std::string_view key) {
  const std::size_t close = key.find("}:");
  return close == std::string_view::npos ? std::string_view() : key.substr(close + 2);
}

}  // namespace

std::map<std::string, std::int64_t> MemoryStore::countByLimit(const std::string& limit) const {
  std::map<std::string, std::int64_t> out;
  for (const auto& [key, entry] : entries_) {
    const std::string_view name = limitOfKey(key);
    if (limit.empty() || name == limit) {
      ++out[std::string(name)];
    }
  }
  return out;
}

std::int64_t MemoryStore::resetAll(const std::string& limit) {
  std::int64_t n = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (limit.empty() || limitOfKey(it->first) == limit) {
      it = entries_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

}  // namespace relaykit::policy

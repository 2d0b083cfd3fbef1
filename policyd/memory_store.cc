// SPDX-License-Identifier: Apache-2.0
// memory_store.cc: in-process GCRA state; see memory_store.h.
#include "policyd/memory_store.h"

#include <algorithm>

namespace relaykit::policy {

namespace {
// Expired entries are reclaimed by a sweep spread over requests and paced by the clock: the
// whole table is examined once per kSweepPassUs while requests arrive, a few buckets at a time
// (at most kMaxSweepBucketsPerCall per request), so no request pays for a pass over the whole
// table and a busy relay does not re-examine live entries thousands of times a second (each
// examined entry is a cache miss; a fixed 8 buckets per request cost 8 % of the CPU at 80,000
// requests/s). Expired entries are equivalent to absent ones (gcra.h), so how soon one goes
// only matters for memory, which maxKeys bounds.
constexpr std::int64_t kSweepPassUs = 1000000;
constexpr std::size_t kMaxSweepBucketsPerCall = 64;
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
  if (nowUs < lastSweepUs_ || entries_.empty()) {
    lastSweepUs_ = nowUs;
    sweepCredit_ = 0;
    return;
  }
  // Credit in bucket-microseconds: buckets * elapsed; one bucket costs kSweepPassUs.
  const std::int64_t elapsed = std::min(nowUs - lastSweepUs_, kSweepPassUs);
  lastSweepUs_ = nowUs;
  sweepCredit_ += elapsed * static_cast<std::int64_t>(buckets);
  const std::size_t due = std::min<std::size_t>(
      static_cast<std::size_t>(sweepCredit_ / kSweepPassUs), kMaxSweepBucketsPerCall);
  sweepCredit_ = std::min(sweepCredit_ - static_cast<std::int64_t>(due) * kSweepPassUs,
                          kSweepPassUs * static_cast<std::int64_t>(kMaxSweepBucketsPerCall));
  for (std::size_t i = 0; i < due && !entries_.empty(); ++i) {
    sweepBucket(sweepCursor_++ % buckets, nowUs);
  }
}

StatusOr<StoreResult> MemoryStore::evaluateNow(const StoreRequest& request) {
  const std::int64_t now = clock_();
  sweep(now);
  // One hash lookup per charge (each is a likely cache miss): found[i] is the entry of
  // request.charges[i].key or null. Element pointers survive later insertions (rehashing).
  std::vector<Entry*>& found = found_;
  found.assign(request.charges.size(), nullptr);
  std::size_t newKeys = 0;
  for (std::size_t i = 0; i < request.charges.size(); ++i) {
    auto it = entries_.find(request.charges[i].key);
    if (it == entries_.end()) {
      ++newKeys;
    } else {
      found[i] = &it->second;
    }
  }
  auto tatOf = [&found, now](std::size_t i, const RateWindow& window) -> std::int64_t {
    if (found[i] == nullptr) {
      return 0;
    }
    for (const Entry::Slot& slot : found[i]->tats) {
      if (slot.periodUs == window.periodUs) {
        return gcraRescale(slot.tatUs, now, slot.max, window.max);
      }
    }
    return 0;
  };
  std::vector<std::vector<std::int64_t>>& newTats = newTats_;
  StoreResult result = evaluateCharges(request, now, tatOf, &newTats);
  if (!result.committed) {
    return result;
  }
  if (entries_.size() + newKeys > maxKeys_) {
    return Status::error("memory store full (" + std::to_string(maxKeys_) + " keys)");
  }
  for (std::size_t i = 0; i < request.charges.size(); ++i) {
    const StoreCharge& charge = request.charges[i];
    if (!result.outcomes[i].allowed) {
      continue;  // a refused warn-only charge: not counted
    }
    Entry& entry = found[i] != nullptr ? *found[i] : entries_[charge.key];
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

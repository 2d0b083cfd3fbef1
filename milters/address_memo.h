// SPDX-License-Identifier: Apache-2.0
// address_memo.h: the answers of rewrite_from / rewrite_sender address mappings, remembered for
// the life of one configuration snapshot.
//
// Tables are immutable (common/table.h: every source is in memory, loaded at start-up or reload),
// so mapping one address through one table, with the same rounds, gives the same answer for as
// long as the snapshot lives; a relay sees the same few senders (root, cron, nagios, an
// application's From) over and over, and a table search costs a few thousand instructions per
// address (key forms, folding, regexp sets). A memo belongs to one snapshot and one mapping
// (MilterConfig holds one for rewrite_from addresses, one for whole rewrite_from header values
// and one for rewrite_sender) and goes with it on reload.
// Bounded: addresses over kMaxAddressMemoKeyBytes are not remembered, and when
// kMaxAddressMemoEntries are held the memo starts again empty. Errors are never remembered.
// Thread-safe (a mutex; the event loop is its only user in relaykit-milter).
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/lookup_result.h"

namespace relaykit::milter {

inline constexpr std::size_t kMaxAddressMemoEntries = 4096;
inline constexpr std::size_t kMaxAddressMemoKeyBytes = 512;

// A bounded map from text to a remembered answer, for one snapshot (see above).
template <typename Value>
class BoundedMemo {
 public:
  // The remembered answer for `key`, if any.
  std::optional<Value> find(std::string_view key) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      return std::nullopt;
    }
    return it->second;
  }
  // Calls `use` with the remembered answer for `key` (under the lock: `use` must not call back
  // into this memo) and returns true; false when there is none. Saves find()'s copy.
  template <typename Use>
  bool visit(std::string_view key, Use&& use) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      return false;
    }
    use(it->second);
    return true;
  }
  // Remembers `value` for `key` (a key over kMaxAddressMemoKeyBytes is not remembered).
  void remember(std::string_view key, const Value& value) {
    if (key.size() > kMaxAddressMemoKeyBytes) {
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.size() >= kMaxAddressMemoEntries) {
      entries_.clear();
    }
    entries_.emplace(std::string(key), value);
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, Value, std::less<>> entries_;
};

// Address -> Found(new address) or NotFound through one table; errors are never remembered.
class AddressMemo {
 public:
  std::optional<LookupResult> find(std::string_view address) const { return memo_.find(address); }
  // BoundedMemo::visit.
  template <typename Use>
  bool visit(std::string_view address, Use&& use) const {
    return memo_.visit(address, std::forward<Use>(use));
  }
  // Remembers a Found or NotFound answer; errors and over-long addresses are ignored.
  void remember(std::string_view address, const LookupResult& result) {
    if (!result.isError()) {
      memo_.remember(address, result);
    }
  }
  std::size_t size() const { return memo_.size(); }

 private:
  BoundedMemo<LookupResult> memo_;
};

// A rewrite_from header value -> what rewriting its addresses made of it (only for values that
// parse and whose lookups all succeeded).
struct HeaderRewrite {
  bool changed = false;
  std::string value;    // the new value when changed
  std::string summary;  // "<a> -> <b>, ..." when changed
};
using HeaderRewriteMemo = BoundedMemo<HeaderRewrite>;

}  // namespace relaykit::milter

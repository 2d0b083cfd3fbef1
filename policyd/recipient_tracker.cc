// SPDX-License-Identifier: Apache-2.0
// recipient_tracker.cc: bounded per-message recipient lists; see recipient_tracker.h.
#include "policyd/recipient_tracker.h"

namespace relaykit::policy {

RecipientTracker::RecipientTracker(std::size_t maxInstances, std::size_t maxRecipients,
                                   std::size_t maxBytesPerMessage, std::size_t maxBytes)
    : maxInstances_(maxInstances),
      maxRecipients_(maxRecipients),
      maxBytesPerMessage_(maxBytesPerMessage),
      maxBytes_(maxBytes) {}

void RecipientTracker::erase(std::unordered_map<std::string, Entry>::iterator it) {
  bytes_ -= it->second.bytes;
  order_.erase(it->second.age);
  entries_.erase(it);
}

void RecipientTracker::evictOldest() {
  auto it = entries_.find(order_.front());
  erase(it);
  ++evicted_;
}

RecipientTracker::Result RecipientTracker::remember(std::string_view instance,
                                                    std::string_view recipient) {
  if (instance.empty() || recipient.empty()) {
    return Result::kIgnored;
  }
  const std::size_t cost = recipient.size() + kTrackedEntryOverhead;
  auto it = entries_.find(std::string(instance));
  if (it == entries_.end()) {
    const std::size_t entryCost = instance.size() + kTrackedEntryOverhead;
    if (entryCost + cost > maxBytesPerMessage_) {
      return Result::kMessageFull;  // not even one recipient fits: nothing is kept
    }
    while (!entries_.empty() &&
           (entries_.size() >= maxInstances_ || bytes_ + entryCost + cost > maxBytes_)) {
      evictOldest();
    }
    order_.emplace_back(instance);
    Entry entry;
    entry.bytes = entryCost;
    entry.age = std::prev(order_.end());
    it = entries_.emplace(std::string(instance), std::move(entry)).first;
    bytes_ += entryCost;
  }
  Entry& entry = it->second;
  if (entry.tracked.recipients.size() >= maxRecipients_ ||
      entry.bytes + cost > maxBytesPerMessage_) {
    const bool first = !entry.tracked.incomplete;
    entry.tracked.incomplete = true;
    return first ? Result::kMessageFull : Result::kAlreadyFull;
  }
  // The total bound: forget older messages (never this one).
  while (bytes_ + cost > maxBytes_ && order_.front() != it->first) {
    evictOldest();
  }
  if (bytes_ + cost > maxBytes_) {
    const bool first = !entry.tracked.incomplete;
    entry.tracked.incomplete = true;
    return first ? Result::kMessageFull : Result::kAlreadyFull;
  }
  entry.tracked.recipients.emplace_back(recipient);
  entry.bytes += cost;
  bytes_ += cost;
  return Result::kRemembered;
}

const TrackedRecipients* RecipientTracker::find(std::string_view instance) const {
  auto it = entries_.find(std::string(instance));
  return it == entries_.end() ? nullptr : &it->second.tracked;
}

bool RecipientTracker::take(std::string_view instance, TrackedRecipients* out) {
  auto it = entries_.find(std::string(instance));
  if (it == entries_.end()) {
    return false;
  }
  *out = std::move(it->second.tracked);
  erase(it);
  return true;
}

}  // namespace relaykit::policy

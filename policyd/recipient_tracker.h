// SPDX-License-Identifier: Apache-2.0
// recipient_tracker.h: the recipients relaykit-policyd accepted at RCPT for each open message
// (`instance`), kept until that message's END-OF-MESSAGE request, bounded in count AND bytes.
//
// Postfix sends `recipient` at END-OF-MESSAGE only for single-recipient mail, so limits keyed by
// recipient or recipient_domain need the list gathered at RCPT. Bounds (named limits below):
//  - per message: at most kMaxTrackedRecipients recipients and kMaxTrackedBytesPerMessage bytes;
//    recipients beyond either are not remembered and the message is marked `incomplete`;
//  - in total: at most kMaxTrackedInstances messages and kMaxTrackedBytes bytes; beyond either,
//    the OLDEST open messages are forgotten first (messages whose END-OF-MESSAGE never comes:
//    RSET, QUIT, lost connections, are the usual ones).
// A forgotten or incomplete list only means fewer recipients are charged to recipient-keyed
// limits at END-OF-MESSAGE; mail is never refused or bounced because of it. Byte counts include
// a fixed per-entry overhead, so a flood of empty-ish values is bounded too. Pure: no I/O, no
// clock; single-threaded (the loop thread).
#pragma once

#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace relaykit::policy {

inline constexpr std::size_t kMaxTrackedInstances = 100000;
inline constexpr std::size_t kMaxTrackedRecipients = 1000;
inline constexpr std::size_t kMaxTrackedBytesPerMessage = 128 * 1024;
inline constexpr std::size_t kMaxTrackedBytes = 64 * 1024 * 1024;
// Counted per remembered string besides its bytes (std::string and bookkeeping).
inline constexpr std::size_t kTrackedEntryOverhead = 64;

struct TrackedRecipients {
  std::vector<std::string> recipients;
  bool incomplete = false;  // some recipients were not remembered (a per-message bound)
};

class RecipientTracker {
 public:
  enum class Result {
    kRemembered,
    kMessageFull,  // over a per-message bound: not remembered (first time: the caller logs)
    kAlreadyFull,  // over a per-message bound again: not remembered
    kIgnored,      // empty instance or recipient
  };
  RecipientTracker(std::size_t maxInstances = kMaxTrackedInstances,
                   std::size_t maxRecipients = kMaxTrackedRecipients,
                   std::size_t maxBytesPerMessage = kMaxTrackedBytesPerMessage,
                   std::size_t maxBytes = kMaxTrackedBytes);

  Result remember(std::string_view instance, std::string_view recipient);
  // The message's list, or null when none is known (never seen, or forgotten).
  const TrackedRecipients* find(std::string_view instance) const;
  // Removes and returns the message's list (END-OF-MESSAGE); false when none is known.
  bool take(std::string_view instance, TrackedRecipients* out);

  std::size_t instances() const { return entries_.size(); }
  std::size_t bytes() const { return bytes_; }
  // Messages forgotten to stay within the total bounds, since construction.
  std::size_t evicted() const { return evicted_; }

 private:
  struct Entry {
    TrackedRecipients tracked;
    std::size_t bytes = 0;
    std::list<std::string>::iterator age;  // position in order_
  };
  void erase(std::unordered_map<std::string, Entry>::iterator it);
  void evictOldest();

  std::size_t maxInstances_, maxRecipients_, maxBytesPerMessage_, maxBytes_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> order_;  // instances, oldest first
  std::size_t bytes_ = 0;
  std::size_t evicted_ = 0;
};

}  // namespace relaykit::policy

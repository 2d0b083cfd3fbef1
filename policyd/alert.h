// SPDX-License-Identifier: Apache-2.0
// alert.h: what relaykit-policyd says when a limit trips, and how often (pure: no I/O, no clock).
//
// A trip is one limit exceeded by one principal (verdict.hits). The first trip of a (limit,
// principal) opens a window (`alerts: interval:`, else the principal's shortest window) during
// which further trips are not alerted again: AlertWindows is that table for one relay; the Redis
// store adds a fleet-wide claim (alert_notifier.h). The alert is a syslog line starting with
// kAlertTag and/or a mail handed to `sendmail -t -i` (alert_mailer.h).
//
// Hostile values (principals, senders, HELO names come from SMTP clients) never reach a log line
// or a mail header raw: sanitizeAlertValue() keeps printable ASCII, writes every other byte as
// \xNN (so no CR, LF or NUL survives) and cuts the result to kMaxAlertValueBytes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policyd/gcra.h"

namespace relaykit::policy {

// The fixed tag log monitors key on: "relaykit-policyd[PID]: relaykit-alert: limit=...".
inline constexpr const char* kAlertTag = "relaykit-alert:";
inline constexpr const char* kDefaultSendmail = "/usr/sbin/sendmail";
// Bytes of one hostile value (principal, sender, client, ...) in an alert, after escaping.
inline constexpr std::size_t kMaxAlertValueBytes = 200;
// mail_to addresses, and the length of one address (mail_to, mail_from) or relay_name.
inline constexpr std::size_t kMaxAlertRecipients = 20;
inline constexpr std::size_t kMaxAlertAddressBytes = 254;
// sendmail: the program and its arguments.
inline constexpr std::size_t kMaxSendmailArgs = 16;
// Alert mails waiting for the sendmail worker (`queue:`).
inline constexpr std::size_t kDefaultAlertQueue = 100;
inline constexpr std::size_t kMaxAlertQueue = 10000;
// How long one sendmail may run before it is killed (`timeout:`).
inline constexpr std::chrono::milliseconds kDefaultSendmailTimeout{30000};
inline constexpr std::chrono::milliseconds kMaxSendmailTimeout{600000};
// Open alert windows one relay remembers; beyond, the oldest is forgotten first.
inline constexpr std::size_t kMaxAlertWindows = 100000;

// The `policy: alerts:` section.
struct AlertSettings {
  bool enabled = false;  // the section exists
  bool syslog = true;
  std::vector<std::string> mailTo;  // empty: no mail
  std::string mailFrom;             // empty: sendmail's default envelope sender, no From: line
  std::vector<std::string> sendmail = {kDefaultSendmail};  // the program, then its arguments
  std::size_t queue = kDefaultAlertQueue;
  std::chrono::milliseconds timeout = kDefaultSendmailTimeout;
  std::int64_t intervalUs = 0;  // 0: the principal's shortest window
  std::string relayName;        // empty: the host name
};

// One trip that is alerted.
struct AlertEvent {
  std::string limit;
  bool warnOnly = false;
  std::string principal;  // raw (principalOf): sanitised when formatted
  std::string stage;      // RCPT, DATA, END-OF-MESSAGE
  std::string countUnit;  // messages, recipients, bytes
  std::vector<RateWindow> windows;
  std::int64_t intervalUs = 0;  // no further alert for this principal and limit within it
  std::int64_t retryAfterSeconds = 0;
  std::string sender;
  std::string client;
  std::string heloName;
  std::string saslUsername;
  std::string queueId;
  std::string relay;
  bool fleetWide = false;  // the window is claimed in the Redis store (every relay honours it)
  std::int64_t atUs = 0;   // wall clock of the trip (microseconds since the epoch)
};

// Printable ASCII kept (a backslash doubled), every other byte as \xNN; at most `max` bytes
// (then "..." ends it, within the bound).
std::string sanitizeAlertValue(std::string_view value, std::size_t max = kMaxAlertValueBytes);
// The principal for people: "sender=a@b, client_address=192.0.2.1", sanitised and bounded.
std::string displayPrincipal(std::string_view principal);
// "1h", "90s", "1500ms", "2d": the largest unit that divides the duration exactly.
std::string formatDurationUs(std::int64_t us);
// "4/1h, 100/1d".
std::string formatWindows(const std::vector<RateWindow>& windows);
// The dedup interval of a trip: `configuredUs` when > 0, else the shortest period of `windows`.
std::int64_t alertIntervalUs(std::int64_t configuredUs, const std::vector<RateWindow>& windows);
// The store key of a trip's alert window from the limit's counter key:
// "rl:{digest}:limit" -> "alert:{digest}:limit" (same hash tag, never the raw principal).
std::string alertKeyFor(std::string_view counterKey);

// The syslog text (without the program name): "relaykit-alert: limit=NAME mode=enforce
// principal=\"...\" interval=1h relay=HOST stage=RCPT retry_after=60s sender=<...> client=...".
std::string formatAlertLogLine(const AlertEvent& event);
// The whole message for `sendmail -t -i`: headers (From: only with mail_from, To:, Subject:,
// Date:, Message-ID:, Auto-Submitted: auto-generated, MIME), a blank line, a plain text body.
// LF line ends (sendmail converts). Every hostile value sanitised.
std::string formatAlertMail(const AlertSettings& settings, const AlertEvent& event,
                            std::uint64_t sequence);
// The argv of one submission: sendmail (program and arguments), "-t", "-i", and "-f FROM"
// when mail_from is set.
std::vector<std::string> sendmailArgv(const AlertSettings& settings);

// True for an address safe on a command line and in a header: 1..kMaxAlertAddressBytes bytes
// of dot-atom characters and at most one '@' (a bare local part is qualified by Postfix).
bool isPlainAddress(std::string_view address);

// The open alert windows of one relay: key -> end of its window. Bounded by `maxEntries`, the
// entry opened first forgotten first (that principal may then be alerted again early). Not
// thread-safe (the loop thread).
class AlertWindows {
 public:
  explicit AlertWindows(std::size_t maxEntries = kMaxAlertWindows) : maxEntries_(maxEntries) {}
  // True when no window of `key` is open at nowUs: then one is opened until nowUs + lengthUs.
  bool open(const std::string& key, std::int64_t nowUs, std::int64_t lengthUs);
  // True when a window of `key` is open at nowUs.
  bool isOpen(const std::string& key, std::int64_t nowUs) const;
  // Records a window of `key` that ends at endUs (another relay opened it).
  void remember(const std::string& key, std::int64_t endUs, std::int64_t nowUs);
  std::size_t size() const { return index_.size(); }
  // Windows forgotten while still open (the table was full).
  std::uint64_t evicted() const { return evicted_; }

 private:
  struct Entry {
    std::string key;
    std::int64_t endUs;
  };
  void set(const std::string& key, std::int64_t endUs, std::int64_t nowUs);

  std::size_t maxEntries_;
  std::list<Entry> order_;  // oldest opened first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  std::uint64_t evicted_ = 0;
};

}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// alert.cc: alert text, sanitising and the per-relay alert windows; see alert.h.
#include "policyd/alert.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "policyd/rate_key.h"

namespace relaykit::policy {

namespace {

bool isAtomChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (std::isalnum(u)) {
    return true;
  }
  return std::string_view("!#$%&'*+-/=?^_`{|}~.").find(c) != std::string_view::npos;
}

// Appends the sanitised form of `value` to `out`, at most `max` bytes of it: when the whole
// does not fit, the pieces that fit before a final "..." (cut at a piece, never inside \xNN).
void appendSanitized(std::string_view value, std::size_t max, std::string* out) {
  static constexpr std::string_view kEllipsis = "...";
  const std::size_t start = out->size();
  const std::size_t cutRoom = max > kEllipsis.size() ? max - kEllipsis.size() : 0;
  std::size_t cutAt = start;  // the end of the last piece within cutRoom
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u == '\\') {
      out->append("\\\\");
    } else if (u >= 0x20 && u < 0x7f) {
      out->push_back(c);
    } else {
      char piece[5];
      std::snprintf(piece, sizeof piece, "\\x%02x", u);
      out->append(piece, 4);
    }
    if (out->size() - start <= cutRoom) {
      cutAt = out->size();
    }
    if (out->size() - start > max) {
      out->resize(cutAt);
      out->append(kEllipsis.substr(0, std::min(max, kEllipsis.size())));
      return;
    }
  }
}

std::string rfc5322Date(std::int64_t atUs) {
  const std::time_t t = static_cast<std::time_t>(atUs / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

}  // namespace

std::string sanitizeAlertValue(std::string_view value, std::size_t max) {
  std::string out;
  out.reserve(std::min(max, value.size() + 8));
  appendSanitized(value, max, &out);
  return out;
}

std::string displayPrincipal(std::string_view principal) {
  // Parts are joined by one separator byte; a doubled separator is one inside a value.
  std::string plain;
  plain.reserve(principal.size());
  for (std::size_t i = 0; i < principal.size(); ++i) {
    if (principal[i] != kPrincipalSeparator) {
      plain += principal[i];
    } else if (i + 1 < principal.size() && principal[i + 1] == kPrincipalSeparator) {
      plain += kPrincipalSeparator;  // escaped below as \x1f
      ++i;
    } else {
      plain += ", ";
    }
  }
  return sanitizeAlertValue(plain);
}

std::string formatDurationUs(std::int64_t us) {
  struct Unit {
    std::int64_t us;
    const char* name;
  };
  static constexpr Unit kUnits[] = {{86400000000, "d"}, {3600000000, "h"}, {60000000, "m"},
                                    {1000000, "s"},     {1000, "ms"},      {1, "us"}};
  for (const Unit& unit : kUnits) {
    if (us >= unit.us && us % unit.us == 0) {
      return std::to_string(us / unit.us) + unit.name;
    }
  }
  return std::to_string(us) + "us";
}

std::string formatWindows(const std::vector<RateWindow>& windows) {
  std::string out;
  for (const RateWindow& w : windows) {
    out += (out.empty() ? "" : ", ") + std::to_string(w.max) + "/" + formatDurationUs(w.periodUs);
  }
  return out;
}

std::int64_t alertIntervalUs(std::int64_t configuredUs, const std::vector<RateWindow>& windows) {
  if (configuredUs > 0) {
    return configuredUs;
  }
  std::int64_t shortest = 0;
  for (const RateWindow& w : windows) {
    if (shortest == 0 || w.periodUs < shortest) {
      shortest = w.periodUs;
    }
  }
  return shortest > 0 ? shortest : 1000000;
}

std::string alertKeyFor(std::string_view counterKey) {
  constexpr std::string_view kCounter = "rl:";
  if (counterKey.substr(0, kCounter.size()) == kCounter) {
    counterKey.remove_prefix(kCounter.size());
  }
  return "alert:" + std::string(counterKey);
}

std::string formatAlertLogLine(const AlertEvent& e) {
  std::string line = kAlertTag;
  line += " limit=" + e.limit;
  line += e.warnOnly ? " mode=warn_only" : " mode=enforce";
  line += " principal=\"" + displayPrincipal(e.principal) + "\"";
  line += " interval=" + formatDurationUs(e.intervalUs);
  line += " relay=" + e.relay;
  line += " stage=" + e.stage;
  line += " retry_after=" + std::to_string(e.retryAfterSeconds) + "s";
  line += " sender=<" + sanitizeAlertValue(e.sender) + ">";
  line += " client=" + sanitizeAlertValue(e.client);
  line += " sasl_username=" + sanitizeAlertValue(e.saslUsername);
  line += " queue_id=" + sanitizeAlertValue(e.queueId);
  return line;
}

std::vector<std::string> sendmailArgv(const AlertSettings& settings) {
  std::vector<std::string> argv = settings.sendmail;
  argv.push_back("-t");
  argv.push_back("-i");
  if (!settings.mailFrom.empty()) {
    argv.push_back("-f");
    argv.push_back(settings.mailFrom);
  }
  return argv;
}

std::string formatAlertMail(const AlertSettings& settings, const AlertEvent& e,
                            std::uint64_t sequence) {
  const std::string principal = displayPrincipal(e.principal);
  const std::string mode = e.warnOnly ? "warn_only (logged, not refused)" : "enforce (refused)";
  std::string m;
  if (!settings.mailFrom.empty()) {
    m += "From: relaykit-policyd <" + settings.mailFrom + ">\n";
  }
  m += "To: ";
  for (std::size_t i = 0; i < settings.mailTo.size(); ++i) {
    m += (i == 0 ? "" : ",\n ") + settings.mailTo[i];
  }
  m += "\n";
  m += "Subject: relaykit alert: limit " + e.limit + (e.warnOnly ? " (warn_only)" : "") +
       " exceeded by " + principal + "\n";
  m += "Date: " + rfc5322Date(e.atUs) + "\n";
  m += "Message-ID: <relaykit-alert." + std::to_string(e.atUs) + "." + std::to_string(sequence) +
       "@" + e.relay + ">\n";
  m += "Auto-Submitted: auto-generated\n";
  m += "X-Relaykit-Alert: " + e.limit + "\n";
  m += "MIME-Version: 1.0\n";
  m += "Content-Type: text/plain; charset=us-ascii\n";
  m += "Content-Transfer-Encoding: 7bit\n";
  m += "\n";
  m += "A rate limit of relaykit-policyd tripped.\n\n";
  m += "limit:         " + e.limit + "\n";
  m += "mode:          " + mode + "\n";
  m += "principal:     " + principal + "\n";
  m += "allowance:     " + formatWindows(e.windows) + " " + e.countUnit + "\n";
  m += "relay:         " + e.relay + "\n";
  m += "time:          " + rfc5322Date(e.atUs) + "\n";
  m += "stage:         " + e.stage + "\n";
  m += "retry after:   " + std::to_string(e.retryAfterSeconds) + " s\n";
  m += "sender:        <" + sanitizeAlertValue(e.sender) + ">\n";
  m += "client:        " + sanitizeAlertValue(e.client) + "\n";
  m += "helo:          " + sanitizeAlertValue(e.heloName) + "\n";
  m += "sasl_username: " + sanitizeAlertValue(e.saslUsername) + "\n";
  m += "queue_id:      " + sanitizeAlertValue(e.queueId) + "\n\n";
  m += "No further alert is sent for this principal and limit for " +
       formatDurationUs(e.intervalUs) + "\n" +
       (e.fleetWide ? "(by any relay sharing the Redis store).\n" : "(by this relay).\n");
  m += "Every refusal is logged (\"refused at\", \"warn_only: would refuse\") and counted\n"
       "in relaykit_policy_limit_exceeded_total.\n";
  return m;
}

bool isPlainAddress(std::string_view address) {
  if (address.empty() || address.size() > kMaxAlertAddressBytes) {
    return false;
  }
  std::size_t ats = 0;
  for (char c : address) {
    if (c == '@') {
      ++ats;
    } else if (!isAtomChar(c)) {
      return false;
    }
  }
  return ats <= 1 && address.front() != '@' && address.back() != '@';
}

bool AlertWindows::open(const std::string& key, std::int64_t nowUs, std::int64_t lengthUs) {
  if (isOpen(key, nowUs)) {
    return false;
  }
  set(key, nowUs + lengthUs, nowUs);
  return true;
}

bool AlertWindows::isOpen(const std::string& key, std::int64_t nowUs) const {
  const auto it = index_.find(key);
  return it != index_.end() && it->second->endUs > nowUs;
}

void AlertWindows::remember(const std::string& key, std::int64_t endUs, std::int64_t nowUs) {
  set(key, endUs, nowUs);
}

void AlertWindows::set(const std::string& key, std::int64_t endUs, std::int64_t nowUs) {
  if (const auto it = index_.find(key); it != index_.end()) {
    order_.erase(it->second);
    index_.erase(it);
  }
  // Closed windows at the front go first (two per call: no call pays for a whole pass), then,
  // when still full, the window opened first although it is still open.
  for (int i = 0; i < 2 && !order_.empty() && order_.front().endUs <= nowUs; ++i) {
    index_.erase(order_.front().key);
    order_.pop_front();
  }
  while (!order_.empty() && index_.size() >= maxEntries_) {
    evicted_ += order_.front().endUs > nowUs ? 1 : 0;
    index_.erase(order_.front().key);
    order_.pop_front();
  }
  if (maxEntries_ == 0) {
    return;
  }
  order_.push_back(Entry{key, endUs});
  index_[key] = std::prev(order_.end());
}

}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// admin_protocol.h: how `relaykit limits` reaches the memory store inside relaykit-policyd.
//
// The memory store lives in the daemon, so the CLI asks the daemon over `policy.admin_socket`
// (a unix socket, mode 0600, bound before privileges are dropped). One request line, one reply
// line, both bounded by kMaxAdminLine; the CLI computes store keys from the same config as the
// daemon (limits_admin.h), the daemon only reads or deletes counters:
//   show KEY MAX/PERIOD_US ...   ->  ok MAX/PERIOD_US/TAT_US/REMAINING/FULL_RESET_US ...
//   reset KEY                    ->  ok N            (1 when a counter existed)
//   count [LIMIT]                ->  ok LIMIT=N ...  (limits with at least one counter)
//   resetall [LIMIT]             ->  ok N            (counters deleted)
// Anything else gets "error TEXT". Keys and limit names never contain spaces (limit names are
// letters, digits, '-', '_', '.'; keys are rl:{hex}:limit).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "policyd/rate_store.h"

namespace relaykit::policy {

class MemoryStore;

inline constexpr std::size_t kMaxAdminLine = 8192;

struct AdminCommand {
  enum class Kind { kShow, kReset, kCount, kResetAll };
  Kind kind = Kind::kCount;
  std::string key;                  // show, reset
  std::vector<RateWindow> windows;  // show
  std::string limit;                // count, resetall (empty: every limit)
};

// The request line for `command`, newline included.
std::string formatAdminCommand(const AdminCommand& command);
// Parses one request line (without its newline).
StatusOr<AdminCommand> parseAdminCommand(std::string_view line);
// Runs `command` on the store; returns the reply line, newline included.
std::string executeAdminCommand(MemoryStore& store, const AdminCommand& command);

// Client side: the reply line (without newline) of each request kind.
StatusOr<std::vector<WindowState>> parseShowReply(std::string_view line);
StatusOr<std::int64_t> parseCountReply(std::string_view line);  // reset, resetall
StatusOr<std::map<std::string, std::int64_t>> parseLimitCountsReply(std::string_view line);

}  // namespace relaykit::policy

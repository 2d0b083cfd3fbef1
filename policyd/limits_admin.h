// limits_admin.h: what `relaykit limits show|reset` does, apart from the command line.
//
// Principals are stored as digests, so a counter is found from the attributes that make up its
// key (client_address=..., sender=..., ...), exactly as relaykit-policyd computes it. Talks to
// Redis synchronously (hiredis, bounded by redis.timeout_ms, at least 1 s); the memory store lives
// inside relaykit-policyd and cannot be reached: those calls return an error saying so.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "policyd/policy_config.h"

struct redisContext;

namespace relaykit::policy {

// One limit that applies to the given attributes.
struct LimitTarget {
  const LimitRule* rule = nullptr;
  std::string principal;  // "part=value" joined by '\x1f'
  std::string key;        // store key without prefix
};

// Parses "name=value" words into a request (an error names the first word without '=').
StatusOr<PolicyRequest> requestFromWords(const std::vector<std::string>& words);
// Every limit (or only `limitName` when not empty) whose key the request fills.
std::vector<LimitTarget> limitTargets(const PolicyConfig& config, const PolicyRequest& request,
                                      const std::string& limitName);

class RedisAdmin {
 public:
  ~RedisAdmin();
  RedisAdmin(RedisAdmin&& other) noexcept;
  RedisAdmin& operator=(RedisAdmin&&) = delete;
  RedisAdmin(const RedisAdmin&) = delete;
  RedisAdmin& operator=(const RedisAdmin&) = delete;

  // Connects (AUTH, SELECT as configured). Errors: unreachable, refused AUTH.
  static StatusOr<RedisAdmin> connect(const RedisStoreSettings& settings);
  // The stored state of every window of `target` (by Redis's clock).
  StatusOr<std::vector<WindowState>> show(const LimitTarget& target);
  // Deletes the counters of `target`; returns how many keys existed (0 or 1).
  StatusOr<std::int64_t> reset(const LimitTarget& target);
  // Counter keys per limit name (SCAN, all limits when `limitName` is empty).
  StatusOr<std::map<std::string, std::int64_t>> count(const std::string& limitName);
  // Deletes every counter key (of one limit when `limitName` is not empty); returns how many.
  StatusOr<std::int64_t> resetAll(const std::string& limitName);

 private:
  RedisAdmin(redisContext* context, std::string prefix) : c_(context), prefix_(std::move(prefix)) {}
  StatusOr<std::vector<std::string>> scan(const std::string& limitName);
  redisContext* c_;
  std::string prefix_;
};

}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// limits_admin.h: what `relaykit limits show|reset` does, apart from the command line.
//
// Principals are stored as digests, so a counter is found from the attributes that make up its
// key (client_address=..., sender=..., ...), exactly as relaykit-policyd computes it. Talks to
// Redis synchronously (hiredis, bounded by redis.timeout_ms, at least 1 s); the memory store
// lives inside relaykit-policyd and is reached through its policy.admin_socket
// (admin_protocol.h, bounded by kAdminTimeoutMs).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "policyd/admin_protocol.h"
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

// What `relaykit limits` needs from a store.
class LimitsAdmin {
 public:
  virtual ~LimitsAdmin() = default;
  // The stored state of every window of `target`.
  virtual StatusOr<std::vector<WindowState>> show(const LimitTarget& target) = 0;
  // Deletes the counters of `target`; returns how many existed (0 or 1).
  virtual StatusOr<std::int64_t> reset(const LimitTarget& target) = 0;
  // Counters per limit name (all limits when `limitName` is empty).
  virtual StatusOr<std::map<std::string, std::int64_t>> count(const std::string& limitName) = 0;
  // Deletes every counter (of one limit when `limitName` is not empty); returns how many.
  virtual StatusOr<std::int64_t> resetAll(const std::string& limitName) = 0;
};

inline constexpr int kAdminTimeoutMs = 5000;

// The memory store inside a running relaykit-policyd, through its admin socket.
class SocketAdmin : public LimitsAdmin {
 public:
  ~SocketAdmin() override;
  SocketAdmin(const SocketAdmin&) = delete;
  SocketAdmin& operator=(const SocketAdmin&) = delete;
  // Errors: no such socket, nobody listening, permission denied.
  static StatusOr<std::unique_ptr<SocketAdmin>> connect(const std::string& path);
  StatusOr<std::vector<WindowState>> show(const LimitTarget& target) override;
  StatusOr<std::int64_t> reset(const LimitTarget& target) override;
  StatusOr<std::map<std::string, std::int64_t>> count(const std::string& limitName) override;
  StatusOr<std::int64_t> resetAll(const std::string& limitName) override;

 private:
  explicit SocketAdmin(int fd) : fd_(fd) {}
  StatusOr<std::string> call(const AdminCommand& command);  // the reply line, no newline
  int fd_;
  std::string buffer_;
};

class RedisAdmin : public LimitsAdmin {
 public:
  ~RedisAdmin() override;
  RedisAdmin(RedisAdmin&& other) noexcept;
  RedisAdmin& operator=(RedisAdmin&&) = delete;
  RedisAdmin(const RedisAdmin&) = delete;
  RedisAdmin& operator=(const RedisAdmin&) = delete;

  // Connects (AUTH, SELECT as configured). Errors: unreachable, refused AUTH.
  static StatusOr<RedisAdmin> connect(const RedisStoreSettings& settings);
  // By Redis's clock; count() SCANs the key space.
  StatusOr<std::vector<WindowState>> show(const LimitTarget& target) override;
  StatusOr<std::int64_t> reset(const LimitTarget& target) override;
  StatusOr<std::map<std::string, std::int64_t>> count(const std::string& limitName) override;
  StatusOr<std::int64_t> resetAll(const std::string& limitName) override;

 private:
  RedisAdmin(redisContext* context, std::string prefix) : c_(context), prefix_(std::move(prefix)) {}
  StatusOr<std::vector<std::string>> scan(const std::string& limitName);
  redisContext* c_;
  std::string prefix_;
};

}  // namespace relaykit::policy

// SPDX-License-Identifier: Apache-2.0
// redis_store.h: the rate-limit store shared by every relay, on Redis through hiredis async.
//
// Guarantees: one round trip per decision (EVALSHA of redis_script.h; on NOSCRIPT the script is
// sent once with EVAL, which also loads it); the event loop never blocks (hiredis libevent
// adapter); every evaluate() answers within timeout_ms, with an error when Redis is down, slow or
// refusing, so Postfix never waits longer than that; a lost or stuck connection is dropped and
// re-established with exponential backoff (100 ms to 5 s), and decisions resume as soon as Redis
// is back (with sentinels: as soon as they name a new primary; they are asked every 250 ms
// meanwhile). While disconnected, evaluate() fails at once. Not thread-safe: one event loop owns
// it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "policyd/rate_store.h"

struct event_base;
struct event;
struct redisAsyncContext;

namespace relaykit::policy {

struct RedisStoreSettings {
  std::string host = "127.0.0.1";  // when unixPath is empty
  int port = 6379;
  std::string unixPath;
  int database = 0;
  std::string username;  // ACL user: AUTH username password; empty: AUTH password
  std::string password;  // empty: no AUTH (never logged)
  int timeoutMs = 50;
  std::string keyPrefix = "relaykit:";
  // Sentinel: when not empty, the primary of `masterName` is asked of these sentinels (in order,
  // the next on error) and host/port above are not used.
  std::vector<std::pair<std::string, int>> sentinels;
  std::string masterName;
  std::string sentinelUsername;  // AUTH to each sentinel when sentinelPassword is set
  std::string sentinelPassword;  // never logged
};

struct RedisStoreStats {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;  // every failed evaluate(), timeouts included
  std::uint64_t timeouts = 0;
  std::uint64_t connects = 0;  // successful connections (the first one included)
  std::uint64_t noscript = 0;
  bool connected = false;
  // While !connected: when the usable connection was lost, or the store started, so "time
  // without a primary" is exact whenever it is read.
  std::chrono::steady_clock::time_point disconnectedAt{};
  // Connections refused because the server is a Redis Cluster node (see connectData()).
  std::uint64_t clusterRefused = 0;
  // Sentinel only.
  std::string primary;            // "host:port" last reported by a sentinel ("" before)
  std::uint64_t failovers = 0;    // times the reported primary changed
  std::uint64_t discoveries = 0;  // sentinel queries answered with a primary
};

class RedisStore : public RateStore {
 public:
  // `testClock`: when set, its time is sent to the script instead of Redis's TIME (tests only).
  RedisStore(event_base* base, RedisStoreSettings settings, MicrosClock testClock = nullptr);
  ~RedisStore() override;
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  // Starts connecting; later failures are retried with backoff.
  void start();
  void evaluate(StoreRequest request, Callback done) override;

  // The fleet-wide alert window (alert_notifier.h), outside the rate-limit script:
  // `SET <prefix>KEY VALUE NX PX TTL` then `PTTL <prefix>KEY`, pipelined (one round trip) on the
  // connection decisions use (with sentinels: the primary). `done` gets 0 when this call set the
  // key (this relay owns the window), else the milliseconds the window set by another has left
  // (at least 1); an error when not connected, on an error reply, or when the connection is lost
  // (the decisions' timeout drops a stuck connection, which answers every pending claim). Called
  // exactly once, maybe before claim() returns.
  using ClaimCallback = std::function<void(StatusOr<std::int64_t>)>;
  void claim(const std::string& key, const std::string& value, std::int64_t ttlMs,
             ClaimCallback done);

  const RedisStoreStats& stats() const { return stats_; }
  const RedisStoreSettings& settings() const { return settings_; }

  struct Pending;  // one in-flight evaluate(); public for the C callbacks only

 private:
  friend struct RedisStoreCallbacks;
  void connect();
  void connectData();
  // Sentinel discovery: asks sentinels_[sentinelIndex_] for the primary, asynchronously.
  void discover();
  void discoveryFailed(const std::string& why);
  void onSentinelReply(redisAsyncContext* ac, void* reply);
  void onRoleReply(redisAsyncContext* ac, void* reply);
  void onClusterProbeReply(redisAsyncContext* ac, void* reply);
  void dropSentinel();
  void connectionLost(const char* why);
  void scheduleReconnect();
  // The usable connection is gone: stats_.connected false, disconnectedAtUs set on the change.
  void markDisconnected();
  void send(Pending* pending, bool withScript);
  void onReply(Pending* pending, void* reply);
  void onTimeout(Pending* pending);

  event_base* base_;
  RedisStoreSettings settings_;
  MicrosClock testClock_;
  std::string scriptSha_;
  redisAsyncContext* ac_ = nullptr;
  bool connected_ = false;
  // The connection counts as up (stats, /health) once TCP is connected and every setup command
  // (AUTH, SELECT) has succeeded.
  bool transportUp_ = false;
  int setupPending_ = 0;
  void setupDone();
  event* reconnectTimer_ = nullptr;
  int backoffMs_ = 100;
  std::int64_t lastReplyUs_ = 0;
  RedisStoreStats stats_;
  std::shared_ptr<bool> alive_;
  // Sentinel state: the primary in use, whether to ask again before the next connection.
  std::string host_;
  int port_ = 0;
  bool needDiscovery_ = true;
  // A sentinel named a primary in the last round: until it is usable, the sentinels are asked
  // again every kSentinelPollMs, and the same primary is only tried again from retryPrimaryAtUs_
  // (steady clock) on, after the backoff.
  bool pollSentinels_ = false;
  std::int64_t retryPrimaryAtUs_ = 0;
  redisAsyncContext* sentinelAc_ = nullptr;
  event* discoveryTimer_ = nullptr;
  std::size_t sentinelIndex_ = 0;
  std::size_t sentinelTries_ = 0;
  std::string authWhat_;  // "AUTH" or "AUTH as user \"NAME\"" (for the error line)
};

}  // namespace relaykit::policy

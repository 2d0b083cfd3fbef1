// SPDX-License-Identifier: Apache-2.0
// redis_store.cc: hiredis async client for the rate-limit script; see redis_store.h.
#include "policyd/redis_store.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "common/server/connection.h"
#include "common/server/logging.h"
#include "policyd/redis_script.h"

namespace relaykit::policy {

namespace {
constexpr int kMinBackoffMs = 100;
constexpr int kMaxBackoffMs = 5000;
// With sentinels, while the primary they name cannot be used: how often they are asked again. A
// failover ends when the sentinels name another primary, and only asking shows it; connecting to
// the primary they keep naming still waits for the backoff (so a dead or refusing server gets no
// more attempts, nor log lines, than without sentinels). One small request to one sentinel, no
// log line. Bounds what relaykit adds to the sentinels' own failover time.
constexpr int kSentinelPollMs = 250;
// A sentinel query gets at least this long (timeout_ms may be tighter than a TCP connect).
constexpr int kMinDiscoveryTimeoutMs = 200;

std::string sha1Hex(const char* text) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text), std::strlen(text), digest);
  char hex[2 * SHA_DIGEST_LENGTH + 1];
  for (int i = 0; i < SHA_DIGEST_LENGTH; ++i) {
    std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  }
  return std::string(hex, 2 * SHA_DIGEST_LENGTH);
}

// A SHA-1 no script has (the probe in connectData() must never run anything).
constexpr const char* kNoScriptSha = "0000000000000000000000000000000000000000";

// Errors only a Redis Cluster node gives: keys in several slots, slots not served, redirections.
bool isClusterError(std::string_view error) {
  for (std::string_view word : {"CROSSSLOT", "CLUSTERDOWN", "MOVED", "ASK", "TRYAGAIN"}) {
    if (error.size() >= word.size() && error.substr(0, word.size()) == word &&
        (error.size() == word.size() || error[word.size()] == ' ')) {
      return true;
    }
  }
  return false;
}

std::int64_t steadyMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

timeval msToTimeval(int ms) {
  timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}
}  // namespace

struct RedisStore::Pending {
  RedisStore* store = nullptr;
  Callback done;
  event* timer = nullptr;
  bool finished = false;
  std::int64_t sentUs = 0;
  std::size_t chargeCount = 0;
  std::vector<std::string> args;  // args[0] is EVALSHA/EVAL, args[1] the sha or the script

  void finish(StatusOr<StoreResult> result) {
    if (finished) {
      return;
    }
    finished = true;
    if (timer != nullptr) {
      event_free(timer);
      timer = nullptr;
    }
    Callback cb = std::move(done);
    cb(std::move(result));
  }
};

// One claim(): two pipelined commands; the second reply (or the first failure) completes it.
struct ClaimState {
  RedisStore::ClaimCallback done;
  int outstanding = 0;
  std::optional<bool> won;  // the SET's answer
  std::string error;

  static void onReply(redisAsyncContext*, void* replyPtr, void* privdata) {
    auto* state = static_cast<ClaimState*>(privdata);
    auto* reply = static_cast<redisReply*>(replyPtr);
    const bool first = !state->won.has_value() && state->error.empty();
    std::int64_t left = 0;
    if (reply == nullptr) {
      state->error = state->error.empty() ? "redis connection lost" : state->error;
    } else if (reply->type == REDIS_REPLY_ERROR) {
      state->error = state->error.empty() ? "redis error: " + std::string(reply->str, reply->len)
                                          : state->error;
    } else if (first) {
      state->won = reply->type == REDIS_REPLY_STATUS;  // "OK"; NIL when the key exists
    } else if (reply->type == REDIS_REPLY_INTEGER) {
      left = reply->integer;
    }
    if (--state->outstanding > 0) {
      return;
    }
    ClaimState* owned = state;
    if (!owned->error.empty() || !owned->won.has_value()) {
      owned->done(Status::error(owned->error.empty() ? "redis: no answer" : owned->error));
    } else {
      // Lost, but the window ended between the two commands (PTTL -2): 1 ms left.
      owned->done(*owned->won ? std::int64_t{0} : std::max<std::int64_t>(left, 1));
    }
    delete owned;
  }
};

struct RedisStoreCallbacks {
  static void onConnect(const redisAsyncContext* ac, int status) {
    auto* store = static_cast<RedisStore*>(ac->data);
    if (store == nullptr || ac != store->ac_) {
      return;
    }
    if (status != REDIS_OK) {
      logWarning(std::string("redis: connect failed: ") + ac->errstr);
      store->ac_ = nullptr;  // hiredis frees the context after this callback
      store->connected_ = false;
      store->transportUp_ = false;
      store->markDisconnected();
      store->scheduleReconnect();
      return;
    }
    store->transportUp_ = true;
    store->setupDone();
  }
  static void onDisconnect(const redisAsyncContext* ac, int status) {
    auto* store = static_cast<RedisStore*>(ac->data);
    if (store == nullptr || ac != store->ac_) {
      return;
    }
    logWarning(std::string("redis: disconnected") +
               (status == REDIS_OK ? "" : std::string(": ") + ac->errstr));
    store->ac_ = nullptr;  // hiredis frees the context after this callback
    store->connected_ = false;
    store->transportUp_ = false;
    store->markDisconnected();
    store->scheduleReconnect();
  }
  static void onReply(redisAsyncContext*, void* reply, void* privdata) {
    auto* pending = static_cast<RedisStore::Pending*>(privdata);
    // hiredis calls this from C: an exception must not unwind through it (the decision's own
    // connection is closed by the skeleton's guard when the reply reaches it).
    runGuarded("redis reply", [&] { pending->store->onReply(pending, reply); });
  }
  static void onSetupReply(redisAsyncContext* ac, void* reply, void* privdata) {
    auto* r = static_cast<redisReply*>(reply);
    auto* store = static_cast<RedisStore*>(ac->data);
    if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
      logError(std::string("redis: ") + static_cast<const char*>(privdata) + " failed: " + r->str);
      if (store != nullptr && ac == store->ac_) {
        redisAsyncDisconnect(ac);
      }
      return;
    }
    if (r != nullptr && store != nullptr && ac == store->ac_) {
      --store->setupPending_;
      store->setupDone();
    }
  }
  static void onSentinelConnect(const redisAsyncContext* ac, int status) {
    auto* store = static_cast<RedisStore*>(ac->data);
    if (status == REDIS_OK || store == nullptr || ac != store->sentinelAc_) {
      return;
    }
    store->sentinelAc_ = nullptr;  // hiredis frees the context after this callback
    store->discoveryFailed(std::string("cannot connect: ") + ac->errstr);
  }
  static void onSentinelDisconnect(const redisAsyncContext* ac, int) {
    auto* store = static_cast<RedisStore*>(ac->data);
    if (store == nullptr || ac != store->sentinelAc_) {
      return;
    }
    store->sentinelAc_ = nullptr;
    store->discoveryFailed("closed the connection");
  }
  static void onSentinelReply(redisAsyncContext* ac, void* reply, void*) {
    auto* store = static_cast<RedisStore*>(ac->data);
    if (store != nullptr) {
      runGuarded("redis sentinel reply", [&] { store->onSentinelReply(ac, reply); });
    }
  }
  static void onSentinelAuthReply(redisAsyncContext* ac, void* reply, void*) {
    auto* store = static_cast<RedisStore*>(ac->data);
    auto* r = static_cast<redisReply*>(reply);
    if (store != nullptr && ac == store->sentinelAc_ && r != nullptr &&
        r->type == REDIS_REPLY_ERROR) {
      const auto& [host, port] =
          store->settings_.sentinels[store->sentinelIndex_ % store->settings_.sentinels.size()];
      logError("redis: sentinel " + host + ":" + std::to_string(port) + ": AUTH" +
               (store->settings_.sentinelUsername.empty()
                    ? std::string()
                    : " as user \"" + store->settings_.sentinelUsername + "\"") +
               " failed: " + std::string(r->str, r->len));
    }
  }
  static void onRoleReply(redisAsyncContext* ac, void* reply, void*) {
    auto* store = static_cast<RedisStore*>(ac->data);
    if (store != nullptr && ac == store->ac_) {
      runGuarded("redis role reply", [&] { store->onRoleReply(ac, reply); });
    }
  }
  static void onClusterProbeReply(redisAsyncContext* ac, void* reply, void*) {
    auto* store = static_cast<RedisStore*>(ac->data);
    if (store != nullptr && ac == store->ac_) {
      store->onClusterProbeReply(ac, reply);
    }
  }
  static void onDiscoveryTimer(evutil_socket_t, short, void* arg) {
    auto* store = static_cast<RedisStore*>(arg);
    store->dropSentinel();
    store->discoveryFailed("no answer in time");
  }
  static void onTimer(evutil_socket_t, short, void* arg) {
    auto* pending = static_cast<RedisStore::Pending*>(arg);
    runGuarded("redis timeout", [&] { pending->store->onTimeout(pending); });
  }
  static void onReconnectTimer(evutil_socket_t, short, void* arg) {
    runGuarded("redis reconnect", [&] { static_cast<RedisStore*>(arg)->connect(); });
  }
};

RedisStore::RedisStore(event_base* base, RedisStoreSettings settings, MicrosClock testClock)
    : base_(base),
      settings_(std::move(settings)),
      testClock_(std::move(testClock)),
      scriptSha_(sha1Hex(kRateLimitScript)) {
  reconnectTimer_ = evtimer_new(base_, RedisStoreCallbacks::onReconnectTimer, this);
  discoveryTimer_ = evtimer_new(base_, RedisStoreCallbacks::onDiscoveryTimer, this);
  host_ = settings_.host;
  port_ = settings_.port;
}

RedisStore::~RedisStore() {
  if (reconnectTimer_ != nullptr) {
    event_free(reconnectTimer_);
  }
  dropSentinel();
  if (discoveryTimer_ != nullptr) {
    event_free(discoveryTimer_);
  }
  if (ac_ != nullptr) {
    redisAsyncContext* ac = ac_;
    ac_ = nullptr;
    ac->data = nullptr;
    redisAsyncFree(ac);  // runs every pending callback with a NULL reply
  }
}

void RedisStore::start() {
  stats_.disconnectedAt = std::chrono::steady_clock::now();
  connect();
}

void RedisStore::markDisconnected() {
  if (stats_.connected) {
    stats_.disconnectedAt = std::chrono::steady_clock::now();
  }
  stats_.connected = false;
}

void RedisStore::setupDone() {
  if (!transportUp_ || setupPending_ > 0 || connected_) {
    return;
  }
  connected_ = true;
  stats_.connected = true;
  stats_.connects++;
  backoffMs_ = kMinBackoffMs;
  logInfo("redis: connected");
}

void RedisStore::scheduleReconnect() {
  needDiscovery_ = true;  // with sentinels: ask again which server is the primary
  retryPrimaryAtUs_ = steadyMicros() + std::int64_t{backoffMs_} * 1000;
  const timeval tv =
      msToTimeval(pollSentinels_ ? std::min(backoffMs_, kSentinelPollMs) : backoffMs_);
  backoffMs_ = std::min(backoffMs_ * 2, kMaxBackoffMs);
  evtimer_add(reconnectTimer_, &tv);
}

void RedisStore::connect() {
  if (ac_ != nullptr || sentinelAc_ != nullptr) {
    return;
  }
  if (!settings_.sentinels.empty() && needDiscovery_) {
    sentinelTries_ = 0;
    discover();
    return;
  }
  connectData();
}

void RedisStore::dropSentinel() {
  if (discoveryTimer_ != nullptr) {
    evtimer_del(discoveryTimer_);
  }
  if (sentinelAc_ != nullptr) {
    redisAsyncContext* ac = sentinelAc_;
    sentinelAc_ = nullptr;
    ac->data = nullptr;
    redisAsyncFree(ac);
  }
}

void RedisStore::discover() {
  const auto& [host, port] = settings_.sentinels[sentinelIndex_ % settings_.sentinels.size()];
  redisAsyncContext* ac = redisAsyncConnect(host.c_str(), port);
  if (ac == nullptr || ac->err) {
    const std::string why = ac != nullptr ? ac->errstr : "out of memory";
    if (ac != nullptr) {
      redisAsyncFree(ac);
    }
    discoveryFailed("cannot connect: " + why);
    return;
  }
  ac->data = this;
  sentinelAc_ = ac;
  redisLibeventAttach(ac, base_);
  redisAsyncSetConnectCallback(ac, RedisStoreCallbacks::onSentinelConnect);
  redisAsyncSetDisconnectCallback(ac, RedisStoreCallbacks::onSentinelDisconnect);
  if (!settings_.sentinelPassword.empty()) {
    // A refused AUTH makes the query below fail with NOAUTH: discoveryFailed() logs that line
    // (naming the sentinel and the user, never the password).
    std::vector<const char*> auth = {"AUTH"};
    std::vector<size_t> authLens = {4};
    if (!settings_.sentinelUsername.empty()) {
      auth.push_back(settings_.sentinelUsername.c_str());
      authLens.push_back(settings_.sentinelUsername.size());
    }
    auth.push_back(settings_.sentinelPassword.c_str());
    authLens.push_back(settings_.sentinelPassword.size());
    redisAsyncCommandArgv(ac, RedisStoreCallbacks::onSentinelAuthReply, nullptr,
                          static_cast<int>(auth.size()), auth.data(), authLens.data());
  }
  const char* argv[3] = {"SENTINEL", "get-master-addr-by-name", settings_.masterName.c_str()};
  const size_t lens[3] = {8, 23, settings_.masterName.size()};
  redisAsyncCommandArgv(ac, RedisStoreCallbacks::onSentinelReply, nullptr, 3, argv, lens);
  const timeval tv = msToTimeval(std::max(settings_.timeoutMs, kMinDiscoveryTimeoutMs));
  evtimer_add(discoveryTimer_, &tv);
}

void RedisStore::discoveryFailed(const std::string& why) {
  const auto& [host, port] = settings_.sentinels[sentinelIndex_ % settings_.sentinels.size()];
  logWarning("redis: sentinel " + host + ":" + std::to_string(port) + ": " + why);
  ++sentinelIndex_;
  if (++sentinelTries_ < settings_.sentinels.size()) {
    discover();  // the next sentinel at once
    return;
  }
  logWarning("redis: no sentinel reported a primary for \"" + settings_.masterName +
             "\"; asking again with backoff");
  pollSentinels_ = false;  // each failed sentinel logs a line: the backoff paces the next round
  scheduleReconnect();
}

void RedisStore::onSentinelReply(redisAsyncContext* ac, void* replyPtr) {
  if (ac != sentinelAc_) {
    return;
  }
  auto* reply = static_cast<redisReply*>(replyPtr);
  std::string host;
  int port = 0;
  std::string why = "no reply";
  if (reply != nullptr && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
      reply->element[0]->type == REDIS_REPLY_STRING &&
      reply->element[1]->type == REDIS_REPLY_STRING) {
    host.assign(reply->element[0]->str, reply->element[0]->len);
    const std::string_view p(reply->element[1]->str, reply->element[1]->len);
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size() || port <= 0 || port > 65535) {
      port = 0;
      why = "malformed primary address";
    }
  } else if (reply != nullptr && reply->type == REDIS_REPLY_NIL) {
    why = "does not know master_name \"" + settings_.masterName + "\"";
  } else if (reply != nullptr && reply->type == REDIS_REPLY_ERROR) {
    why = std::string(reply->str, reply->len);
  }
  // Done with this sentinel connection (freed by hiredis after this callback).
  sentinelAc_ = nullptr;
  ac->data = nullptr;
  evtimer_del(discoveryTimer_);
  redisAsyncDisconnect(ac);
  if (port == 0) {
    discoveryFailed(why);
    return;
  }
  const std::string primary = host + ":" + std::to_string(port);
  stats_.discoveries++;
  pollSentinels_ = true;
  if (primary == stats_.primary && steadyMicros() < retryPrimaryAtUs_) {
    // Still the server that just failed, and its backoff is not over: ask again soon.
    const timeval tv = msToTimeval(kSentinelPollMs);
    evtimer_add(reconnectTimer_, &tv);
    return;
  }
  if (primary != stats_.primary) {
    if (!stats_.primary.empty()) {
      stats_.failovers++;
    }
    logInfo("redis: sentinels report primary " + primary + " for \"" + settings_.masterName + "\"" +
            (stats_.primary.empty() ? "" : " (was " + stats_.primary + ")"));
    stats_.primary = primary;
  }
  host_ = host;
  port_ = port;
  needDiscovery_ = false;
  sentinelTries_ = 0;
  connectData();
}

void RedisStore::onRoleReply(redisAsyncContext* ac, void* replyPtr) {
  auto* reply = static_cast<redisReply*>(replyPtr);
  if (reply == nullptr) {
    return;  // the connection is going away anyway
  }
  const bool primary = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
                       reply->element[0]->type == REDIS_REPLY_STRING &&
                       std::string_view(reply->element[0]->str, reply->element[0]->len) == "master";
  if (!primary) {
    std::string role = "unknown";
    if (reply->type == REDIS_REPLY_ERROR) {
      role = std::string(reply->str, reply->len);
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
               reply->element[0]->type == REDIS_REPLY_STRING) {
      role.assign(reply->element[0]->str, reply->element[0]->len);
    }
    logWarning("redis: " + host_ + ":" + std::to_string(port_) +
               " is not the primary (ROLE: " + role + "); asking the sentinels again");
    needDiscovery_ = true;
    redisAsyncDisconnect(ac);
    return;
  }
  --setupPending_;
  setupDone();
}

void RedisStore::onClusterProbeReply(redisAsyncContext* ac, void* replyPtr) {
  auto* reply = static_cast<redisReply*>(replyPtr);
  if (reply == nullptr) {
    return;  // the connection is going away anyway
  }
  if (reply->type == REDIS_REPLY_ERROR &&
      isClusterError(std::string_view(reply->str, reply->len))) {
    stats_.clusterRefused++;
    logError("redis: " +
             (settings_.unixPath.empty() || !settings_.sentinels.empty()
                  ? host_ + ":" + std::to_string(port_)
                  : settings_.unixPath) +
             " is a Redis Cluster node (" + std::string(reply->str, reply->len) +
             "); relaykit-policyd needs a standalone Redis or one managed by Sentinel, because "
             "one decision charges several principals (hash tags) atomically; not using it");
    redisAsyncDisconnect(ac);
    return;
  }
  // Anything else (NOSCRIPT on a standalone server, or NOPERM) means no Cluster redirection.
  --setupPending_;
  setupDone();
}

void RedisStore::connectData() {
  redisAsyncContext* ac = settings_.unixPath.empty() || !settings_.sentinels.empty()
                              ? redisAsyncConnect(host_.c_str(), port_)
                              : redisAsyncConnectUnix(settings_.unixPath.c_str());
  if (ac == nullptr || ac->err) {
    logWarning(std::string("redis: connect failed: ") +
               (ac != nullptr ? ac->errstr : "out of memory"));
    if (ac != nullptr) {
      redisAsyncFree(ac);
    }
    scheduleReconnect();
    return;
  }
  ac->data = this;
  ac_ = ac;
  redisLibeventAttach(ac, base_);
  redisAsyncSetConnectCallback(ac, RedisStoreCallbacks::onConnect);
  redisAsyncSetDisconnectCallback(ac, RedisStoreCallbacks::onDisconnect);
  lastReplyUs_ = systemMicros();
  transportUp_ = false;
  setupPending_ = 0;
  if (!settings_.password.empty()) {
    ++setupPending_;
    // The password is only ever an argument: the error line names the user, never the secret.
    authWhat_ = settings_.username.empty() ? "AUTH" : "AUTH as user \"" + settings_.username + "\"";
    std::vector<const char*> argv = {"AUTH"};
    std::vector<size_t> lens = {4};
    if (!settings_.username.empty()) {
      argv.push_back(settings_.username.c_str());
      lens.push_back(settings_.username.size());
    }
    argv.push_back(settings_.password.c_str());
    lens.push_back(settings_.password.size());
    redisAsyncCommandArgv(ac, RedisStoreCallbacks::onSetupReply, authWhat_.data(),
                          static_cast<int>(argv.size()), argv.data(), lens.data());
  }
  if (settings_.database != 0) {
    ++setupPending_;
    redisAsyncCommand(ac, RedisStoreCallbacks::onSetupReply, const_cast<char*>("SELECT"),
                      "SELECT %d", settings_.database);
  }
  if (!settings_.sentinels.empty()) {
    // Writes only go to the primary: the server a sentinel named must say so itself.
    ++setupPending_;
    redisAsyncCommand(ac, RedisStoreCallbacks::onRoleReply, nullptr, "ROLE");
  }
  // Cluster probe: a script call naming keys in two hash slots (the shape of a multi-principal
  // decision) with a SHA no script has. A standalone server answers NOSCRIPT; a Cluster node
  // answers CROSSSLOT (or CLUSTERDOWN, MOVED) before looking the script up. Only the rights the
  // daemon needs anyway (EVALSHA, keys under the prefix).
  ++setupPending_;
  const std::string probeA = settings_.keyPrefix + "cluster-probe:{a}";
  const std::string probeB = settings_.keyPrefix + "cluster-probe:{b}";
  const char* probe[] = {"EVALSHA", kNoScriptSha, "2", probeA.c_str(), probeB.c_str()};
  const size_t probeLens[] = {7, 40, 1, probeA.size(), probeB.size()};
  redisAsyncCommandArgv(ac, RedisStoreCallbacks::onClusterProbeReply, nullptr, 5, probe, probeLens);
}

void RedisStore::connectionLost(const char* why) {
  if (ac_ == nullptr) {
    return;
  }
  logWarning(std::string("redis: dropping connection: ") + why);
  redisAsyncContext* ac = ac_;
  ac_ = nullptr;
  connected_ = false;
  transportUp_ = false;
  markDisconnected();
  ac->data = nullptr;
  redisAsyncFree(ac);
  scheduleReconnect();
}

void RedisStore::evaluate(StoreRequest request, Callback done) {
  stats_.requests++;
  if (ac_ == nullptr) {
    stats_.errors++;
    done(Status::error("redis not connected"));
    return;
  }
  if (request.charges.empty()) {
    done(StoreResult{request.commit, {}});
    return;
  }
  auto* pending = new Pending;
  pending->store = this;
  pending->done = std::move(done);
  pending->chargeCount = request.charges.size();
  std::vector<std::string>& a = pending->args;
  a.reserve(6 + request.charges.size() * 4);
  a.push_back("EVALSHA");
  a.push_back(scriptSha_);
  appendRateScriptArgs(request, settings_.keyPrefix, testClock_ ? testClock_() : 0, &a);
  pending->timer = evtimer_new(base_, RedisStoreCallbacks::onTimer, pending);
  const timeval tv = msToTimeval(settings_.timeoutMs);
  evtimer_add(pending->timer, &tv);
  pending->sentUs = systemMicros();
  send(pending, false);
}

void RedisStore::send(Pending* pending, bool withScript) {
  std::vector<std::string>& a = pending->args;
  a[0] = withScript ? "EVAL" : "EVALSHA";
  a[1] = withScript ? std::string(kRateLimitScript) : scriptSha_;
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(a.size());
  lens.reserve(a.size());
  for (const std::string& s : a) {
    argv.push_back(s.data());
    lens.push_back(s.size());
  }
  if (ac_ == nullptr ||
      redisAsyncCommandArgv(ac_, RedisStoreCallbacks::onReply, pending,
                            static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK) {
    stats_.errors++;
    pending->finish(Status::error("redis command could not be queued"));
    delete pending;
  }
}

void RedisStore::onTimeout(Pending* pending) {
  stats_.timeouts++;
  stats_.errors++;
  pending->finish(
      Status::error("redis timeout after " + std::to_string(settings_.timeoutMs) + " ms"));
  // The reply callback still owns `pending`. No reply at all since it was sent: the connection is
  // stuck (Redis stopped, network gone); drop it so pending callbacks run and we reconnect.
  if (lastReplyUs_ < pending->sentUs) {
    connectionLost("no reply within timeout");
  }
}

void RedisStore::onReply(Pending* pending, void* replyPtr) {
  auto* reply = static_cast<redisReply*>(replyPtr);
  if (reply == nullptr) {
    if (!pending->finished) {
      stats_.errors++;
    }
    pending->finish(Status::error("redis connection lost"));
    delete pending;
    return;
  }
  lastReplyUs_ = systemMicros();
  if (reply->type == REDIS_REPLY_ERROR && std::strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
      pending->args[0] == "EVALSHA") {
    stats_.noscript++;
    if (!pending->finished) {
      send(pending, true);
      return;
    }
  }
  StatusOr<StoreResult> result = Status::error("unexpected redis reply");
  if (reply->type == REDIS_REPLY_ERROR) {
    result = Status::error(std::string("redis error: ") + reply->str);
    if (std::strncmp(reply->str, "READONLY", 8) == 0 && !settings_.sentinels.empty() &&
        ac_ != nullptr) {
      // The primary was demoted under us (a failover): find the new one.
      needDiscovery_ = true;
      redisAsyncDisconnect(ac_);
    }
  } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 + 2 * pending->chargeCount) {
    StoreResult r;
    r.committed = reply->element[0]->integer == 1;
    for (std::size_t i = 0; i < pending->chargeCount; ++i) {
      ChargeOutcome o;
      o.allowed = reply->element[1 + 2 * i]->integer == 1;
      o.retryAfterUs = reply->element[2 + 2 * i]->integer;
      r.outcomes.push_back(o);
    }
    result = std::move(r);
  }
  if (!result.isOk() && !pending->finished) {
    stats_.errors++;
  }
  pending->finish(std::move(result));
  delete pending;
}

}  // namespace relaykit::policy

namespace relaykit::policy {

void RedisStore::claim(const std::string& key, const std::string& value, std::int64_t ttlMs,
                       ClaimCallback done) {
  if (ac_ == nullptr || !connected_) {
    done(Status::error("redis not connected"));
    return;
  }
  const std::string fullKey = settings_.keyPrefix + key;
  const std::string ttl = std::to_string(std::max<std::int64_t>(ttlMs, 1));
  auto* state = new ClaimState;
  state->done = std::move(done);
  const char* set[] = {"SET", fullKey.c_str(), value.c_str(), "NX", "PX", ttl.c_str()};
  const size_t setLens[] = {3, fullKey.size(), value.size(), 2, 2, ttl.size()};
  const char* pttl[] = {"PTTL", fullKey.c_str()};
  const size_t pttlLens[] = {4, fullKey.size()};
  state->outstanding = 2;
  if (redisAsyncCommandArgv(ac_, ClaimState::onReply, state, 6, set, setLens) != REDIS_OK) {
    ClaimCallback cb = std::move(state->done);
    delete state;
    cb(Status::error("redis command could not be queued"));
    return;
  }
  if (redisAsyncCommandArgv(ac_, ClaimState::onReply, state, 2, pttl, pttlLens) != REDIS_OK) {
    // The SET's reply (or its NULL when the connection goes) completes the claim.
    state->error = "redis command could not be queued";
    --state->outstanding;
  }
}

}  // namespace relaykit::policy

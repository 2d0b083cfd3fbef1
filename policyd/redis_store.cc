// redis_store.cc: hiredis async client for the rate-limit script; see redis_store.h.
#include "policyd/redis_store.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "common/server/logging.h"
#include "policyd/redis_script.h"

namespace relaykit::policy {

namespace {
constexpr int kMinBackoffMs = 100;
constexpr int kMaxBackoffMs = 5000;

std::string sha1Hex(const char* text) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text), std::strlen(text), digest);
  char hex[2 * SHA_DIGEST_LENGTH + 1];
  for (int i = 0; i < SHA_DIGEST_LENGTH; ++i) {
    std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  }
  return std::string(hex, 2 * SHA_DIGEST_LENGTH);
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
      store->stats_.connected = false;
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
    store->stats_.connected = false;
    store->scheduleReconnect();
  }
  static void onReply(redisAsyncContext*, void* reply, void* privdata) {
    auto* pending = static_cast<RedisStore::Pending*>(privdata);
    pending->store->onReply(pending, reply);
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
  static void onTimer(evutil_socket_t, short, void* arg) {
    auto* pending = static_cast<RedisStore::Pending*>(arg);
    pending->store->onTimeout(pending);
  }
  static void onReconnectTimer(evutil_socket_t, short, void* arg) {
    static_cast<RedisStore*>(arg)->connect();
  }
};

RedisStore::RedisStore(event_base* base, RedisStoreSettings settings, MicrosClock testClock)
    : base_(base),
      settings_(std::move(settings)),
      testClock_(std::move(testClock)),
      scriptSha_(sha1Hex(kRateLimitScript)) {
  reconnectTimer_ = evtimer_new(base_, RedisStoreCallbacks::onReconnectTimer, this);
}

RedisStore::~RedisStore() {
  if (reconnectTimer_ != nullptr) {
    event_free(reconnectTimer_);
  }
  if (ac_ != nullptr) {
    redisAsyncContext* ac = ac_;
    ac_ = nullptr;
    ac->data = nullptr;
    redisAsyncFree(ac);  // runs every pending callback with a NULL reply
  }
}

void RedisStore::start() {
  connect();
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
  const timeval tv = msToTimeval(backoffMs_);
  backoffMs_ = std::min(backoffMs_ * 2, kMaxBackoffMs);
  evtimer_add(reconnectTimer_, &tv);
}

void RedisStore::connect() {
  if (ac_ != nullptr) {
    return;
  }
  redisAsyncContext* ac = settings_.unixPath.empty()
                              ? redisAsyncConnect(settings_.host.c_str(), settings_.port)
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
  stats_.connected = false;
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
  a.reserve(6 + request.charges.size() * 8);
  a.push_back("EVALSHA");
  a.push_back(scriptSha_);
  a.push_back(std::to_string(request.charges.size()));
  for (const StoreCharge& c : request.charges) {
    a.push_back(settings_.keyPrefix + c.key);
  }
  a.push_back(testClock_ ? std::to_string(testClock_()) : "0");
  a.push_back(request.commit ? "1" : "0");
  for (const StoreCharge& c : request.charges) {
    a.push_back(c.enforce ? "1" : "0");
    a.push_back(std::to_string(c.cost));
    a.push_back(std::to_string(c.windows.size()));
    for (const RateWindow& w : c.windows) {
      a.push_back(std::to_string(w.max));
      a.push_back(std::to_string(w.periodUs));
    }
  }
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

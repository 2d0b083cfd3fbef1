// SPDX-License-Identifier: Apache-2.0
// limits_admin.cc: counter lookup and reset for `relaykit limits`; see limits_admin.h.
#include "policyd/limits_admin.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <memory>

#include "common/endpoint.h"
#include "common/server/listener.h"
#include "policyd/policy_engine.h"

namespace relaykit::policy {

namespace {

// TIME seconds beyond this (year ~33658) cannot be a real clock, and their microseconds would
// overflow.
constexpr std::int64_t kMaxRedisTimeSeconds = 1000000000000;
// SCAN batch size and a bound on the keys one command walks through.
constexpr int kScanCount = 1000;
constexpr std::size_t kMaxScannedKeys = 10000000;

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

StatusOr<Reply> command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (r == nullptr) {
    return Status::error(std::string("redis: ") + (c->errstr[0] ? c->errstr : "no reply"));
  }
  Reply reply(r);
  if (reply->type == REDIS_REPLY_ERROR) {
    return Status::error(std::string("redis: ") + reply->str);
  }
  return reply;
}

// A decimal integer read from Redis (TIME fields, stored TATs): checked, never thrown. Redis
// data can be written by anyone who can reach Redis, so it is parsed as untrusted input.
StatusOr<std::int64_t> parseRedisInteger(std::string_view text, const std::string& what) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 0) {
    std::string shown;
    for (char c : text.substr(0, 40)) {
      shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    return Status::error("redis: malformed " + what + " \"" + shown +
                         (text.size() > 40 ? "...\"" : "\"") +
                         " (expected a non-negative decimal integer)");
  }
  return value;
}

std::string_view replyText(const redisReply* r) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
             ? std::string_view(r->str, r->len)
             : std::string_view();
}

std::string globEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

}  // namespace

StatusOr<PolicyRequest> requestFromWords(const std::vector<std::string>& words) {
  PolicyRequest request;
  for (const std::string& w : words) {
    const auto eq = w.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::error("expected attribute=value, got \"" + w + "\"");
    }
    request.add(w.substr(0, eq), w.substr(eq + 1));
  }
  return request;
}

std::vector<LimitTarget> limitTargets(const PolicyConfig& config, const PolicyRequest& request,
                                      const std::string& limitName) {
  std::vector<LimitTarget> out;
  for (const LimitRule& rule : config.limits) {
    if (!limitName.empty() && rule.name != limitName) {
      continue;
    }
    if (auto principal = principalOf(rule.key, request)) {
      out.push_back(LimitTarget{&rule, *principal, storeKeyFor(*principal, rule.name)});
    }
  }
  return out;
}

RedisAdmin::~RedisAdmin() {
  if (c_ != nullptr) {
    redisFree(c_);
  }
}

RedisAdmin::RedisAdmin(RedisAdmin&& other) noexcept
    : c_(std::exchange(other.c_, nullptr)), prefix_(std::move(other.prefix_)) {}

namespace {

// Sentinel: the primary of s.masterName as the first sentinel that answers reports it.
StatusOr<RedisStoreSettings> discoverPrimary(const RedisStoreSettings& s) {
  const int ms = std::max(s.timeoutMs, 1000);
  const timeval tv{ms / 1000, (ms % 1000) * 1000};
  std::string errors;
  for (const auto& [host, port] : s.sentinels) {
    const std::string where = host + ":" + std::to_string(port);
    redisContext* c = redisConnectWithTimeout(host.c_str(), port, tv);
    if (c == nullptr || c->err != 0) {
      errors += "; sentinel " + where + ": " + (c != nullptr ? c->errstr : "out of memory");
      if (c != nullptr) {
        redisFree(c);
      }
      continue;
    }
    redisSetTimeout(c, tv);
    if (!s.sentinelPassword.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!s.sentinelUsername.empty()) {
        auth.push_back(s.sentinelUsername);
      }
      auth.push_back(s.sentinelPassword);
      if (auto a = command(c, auth); !a.isOk()) {
        errors += "; sentinel " + where + ": AUTH failed: " + a.status().message();
        redisFree(c);
        continue;
      }
    }
    auto r = command(c, {"SENTINEL", "get-master-addr-by-name", s.masterName});
    redisFree(c);
    if (!r.isOk()) {
      errors += "; sentinel " + where + ": " + r.status().message();
      continue;
    }
    const redisReply* a = r->get();
    if (a->type != REDIS_REPLY_ARRAY || a->elements != 2 ||
        a->element[0]->type != REDIS_REPLY_STRING || a->element[1]->type != REDIS_REPLY_STRING) {
      errors += "; sentinel " + where + ": no primary known for \"" + s.masterName + "\"";
      continue;
    }
    StatusOr<std::int64_t> p = parseRedisInteger(replyText(a->element[1]), "primary port");
    if (!p.isOk() || *p <= 0 || *p > 65535) {
      errors += "; sentinel " + where + ": malformed primary port";
      continue;
    }
    RedisStoreSettings out = s;
    out.sentinels.clear();
    out.host.assign(a->element[0]->str, a->element[0]->len);
    out.port = static_cast<int>(*p);
    out.unixPath.clear();
    return out;
  }
  return Status::error("no sentinel reported a primary for \"" + s.masterName + "\"" + errors);
}

}  // namespace

StatusOr<RedisAdmin> RedisAdmin::connect(const RedisStoreSettings& settings) {
  RedisStoreSettings s = settings;
  if (!settings.sentinels.empty()) {
    StatusOr<RedisStoreSettings> primary = discoverPrimary(settings);
    if (!primary.isOk()) {
      return primary.status();
    }
    s = *primary;
  }
  const int ms = std::max(s.timeoutMs, 1000);
  const timeval tv{ms / 1000, (ms % 1000) * 1000};
  redisContext* c = s.unixPath.empty() ? redisConnectWithTimeout(s.host.c_str(), s.port, tv)
                                       : redisConnectUnixWithTimeout(s.unixPath.c_str(), tv);
  const std::string where =
      s.unixPath.empty() ? s.host + ":" + std::to_string(s.port) : "unix:" + s.unixPath;
  if (c == nullptr || c->err != 0) {
    Status err = Status::error("cannot connect to redis at " + where + ": " +
                               (c != nullptr ? c->errstr : "out of memory"));
    if (c != nullptr) {
      redisFree(c);
    }
    return err;
  }
  redisSetTimeout(c, tv);
  RedisAdmin admin(c, s.keyPrefix);
  if (!s.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!s.username.empty()) {
      auth.push_back(s.username);
    }
    auth.push_back(s.password);
    if (auto r = command(c, auth); !r.isOk()) {
      // The reply names no secret (WRONGPASS ...); nor does this line.
      return Status::error("redis at " + where + ": AUTH" +
                           (s.username.empty() ? "" : " as user \"" + s.username + "\"") +
                           " failed: " + r.status().message());
    }
  }
  if (s.database != 0) {
    if (auto r = command(c, {"SELECT", std::to_string(s.database)}); !r.isOk()) {
      return r.status();
    }
  }
  if (!settings.sentinels.empty()) {  // resets and shows go to the primary only
    auto r = command(c, {"ROLE"});
    if (!r.isOk()) {
      return r.status();
    }
    const redisReply* role = r->get();
    if (role->type != REDIS_REPLY_ARRAY || role->elements < 1 ||
        replyText(role->element[0]) != "master") {
      return Status::error("redis at " + where + " is not the primary (ROLE)");
    }
  }
  return admin;
}

StatusOr<std::vector<WindowState>> RedisAdmin::show(const LimitTarget& target) {
  auto time = command(c_, {"TIME"});
  if (!time.isOk()) {
    return time.status();
  }
  const redisReply* t = time->get();
  if (t->type != REDIS_REPLY_ARRAY || t->elements != 2) {
    return Status::error("redis: unexpected TIME reply");
  }
  StatusOr<std::int64_t> seconds = parseRedisInteger(replyText(t->element[0]), "TIME seconds");
  StatusOr<std::int64_t> micros = parseRedisInteger(replyText(t->element[1]), "TIME microseconds");
  if (!seconds.isOk() || !micros.isOk()) {
    return seconds.isOk() ? micros.status() : seconds.status();
  }
  if (*seconds > kMaxRedisTimeSeconds || *micros >= 1000000) {
    return Status::error("redis: TIME out of range");
  }
  const std::int64_t now = *seconds * 1000000 + *micros;
  std::vector<WindowState> out;
  for (const RateWindow& w : target.rule->windowsFor(target.principal)) {
    auto r = command(c_, {"HGET", prefix_ + target.key, std::to_string(w.periodUs)});
    if (!r.isOk()) {
      return r.status();
    }
    WindowState state;
    state.window = w;
    if ((*r)->type == REDIS_REPLY_STRING) {  // "TAT:MAX"
      const std::string_view value((*r)->str, (*r)->len);
      const auto colon = value.find(':');
      const std::string what = "counter in " + prefix_ + target.key;
      StatusOr<std::int64_t> tat = parseRedisInteger(value.substr(0, colon), what);
      if (!tat.isOk()) {
        return tat.status();
      }
      state.tatUs = *tat;
      if (colon != std::string_view::npos) {
        StatusOr<std::int64_t> max = parseRedisInteger(value.substr(colon + 1), what);
        if (!max.isOk()) {
          return max.status();
        }
        state.tatUs = gcraRescale(state.tatUs, now, *max, w.max);
      }
    }
    state.remaining = gcraRemaining(state.tatUs, now, w);
    state.fullResetUs = std::max<std::int64_t>(0, state.tatUs - now);
    out.push_back(state);
  }
  return out;
}

StatusOr<std::int64_t> RedisAdmin::reset(const LimitTarget& target) {
  auto r = command(c_, {"DEL", prefix_ + target.key});
  if (!r.isOk()) {
    return r.status();
  }
  return static_cast<std::int64_t>((*r)->integer);
}

StatusOr<std::vector<std::string>> RedisAdmin::scan(const std::string& limitName) {
  const std::string pattern =
      globEscape(prefix_) + "rl:{*}:" + (limitName.empty() ? "*" : globEscape(limitName));
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    auto r = command(c_, {"SCAN", cursor, "MATCH", pattern, "COUNT", std::to_string(kScanCount)});
    if (!r.isOk()) {
      return r.status();
    }
    const redisReply* reply = r->get();
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
      return Status::error("redis: unexpected SCAN reply");
    }
    cursor = reply->element[0]->str;
    for (std::size_t i = 0; i < reply->element[1]->elements; ++i) {
      keys.emplace_back(reply->element[1]->element[i]->str, reply->element[1]->element[i]->len);
    }
  } while (cursor != "0" && keys.size() < kMaxScannedKeys);
  return keys;
}

StatusOr<std::map<std::string, std::int64_t>> RedisAdmin::count(const std::string& limitName) {
  auto keys = scan(limitName);
  if (!keys.isOk()) {
    return keys.status();
  }
  std::map<std::string, std::int64_t> out;
  for (const std::string& k : *keys) {
    const auto close = k.find("}:", prefix_.size());
    if (close != std::string::npos) {
      out[k.substr(close + 2)]++;
    }
  }
  return out;
}

StatusOr<std::int64_t> RedisAdmin::resetAll(const std::string& limitName) {
  auto keys = scan(limitName);
  if (!keys.isOk()) {
    return keys.status();
  }
  std::int64_t deleted = 0;
  for (const std::string& k : *keys) {
    auto r = command(c_, {"DEL", k});  // one key per command: Cluster-safe
    if (!r.isOk()) {
      return r.status();
    }
    deleted += (*r)->integer;
  }
  return deleted;
}

SocketAdmin::~SocketAdmin() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

StatusOr<std::unique_ptr<SocketAdmin>> SocketAdmin::connect(const std::string& path) {
  StatusOr<Endpoint> endpoint = Endpoint::parse("unix:" + path);
  if (!endpoint.isOk()) {
    return endpoint.status();
  }
  StatusOr<int> fd = connectTo(*endpoint);
  if (!fd.isOk()) {
    return Status::error("relaykit-policyd admin socket: " + fd.status().message() +
                         " (is relaykit-policyd running with this policy.admin_socket?)");
  }
  return std::unique_ptr<SocketAdmin>(new SocketAdmin(*fd));
}

StatusOr<std::string> SocketAdmin::call(const AdminCommand& command) {
  const std::string request = formatAdminCommand(command);
  std::size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return Status::error(std::string("admin socket: write: ") + std::strerror(errno));
    }
    sent += static_cast<std::size_t>(n);
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kAdminTimeoutMs);
  for (;;) {
    const std::size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (buffer_.size() > kMaxAdminLine * 4) {
      return Status::error("admin socket: reply too long");
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    const int r = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      return Status::error("admin socket: no reply within " + std::to_string(kAdminTimeoutMs) +
                           " ms");
    }
    char chunk[4096];
    const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return Status::error("admin socket: relaykit-policyd closed the connection");
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

StatusOr<std::vector<WindowState>> SocketAdmin::show(const LimitTarget& target) {
  AdminCommand c;
  c.kind = AdminCommand::Kind::kShow;
  c.key = target.key;
  c.windows = target.rule->windowsFor(target.principal);
  StatusOr<std::string> line = call(c);
  return line.isOk() ? parseShowReply(*line) : StatusOr<std::vector<WindowState>>(line.status());
}

StatusOr<std::int64_t> SocketAdmin::reset(const LimitTarget& target) {
  AdminCommand c;
  c.kind = AdminCommand::Kind::kReset;
  c.key = target.key;
  StatusOr<std::string> line = call(c);
  return line.isOk() ? parseCountReply(*line) : StatusOr<std::int64_t>(line.status());
}

StatusOr<std::map<std::string, std::int64_t>> SocketAdmin::count(const std::string& limitName) {
  AdminCommand c;
  c.kind = AdminCommand::Kind::kCount;
  c.limit = limitName;
  StatusOr<std::string> line = call(c);
  return line.isOk() ? parseLimitCountsReply(*line)
                     : StatusOr<std::map<std::string, std::int64_t>>(line.status());
}

StatusOr<std::int64_t> SocketAdmin::resetAll(const std::string& limitName) {
  AdminCommand c;
  c.kind = AdminCommand::Kind::kResetAll;
  c.limit = limitName;
  StatusOr<std::string> line = call(c);
  return line.isOk() ? parseCountReply(*line) : StatusOr<std::int64_t>(line.status());
}

}  // namespace relaykit::policy

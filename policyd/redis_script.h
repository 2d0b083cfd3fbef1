// SPDX-License-Identifier: Apache-2.0
// redis_script.h: the Lua script the Redis store runs by EVALSHA, one round trip per decision, and
// the encoding of its arguments (rateScriptArgs), which must agree with it.
//
// It mirrors evaluateCharges() + gcraCheck() exactly: the increment of each window is computed
// by policyd with gcraIncrement() (the memory store's own function), the rest in doubles, integers
// in microseconds. Time comes from Redis's own clock (TIME) so relays with skewed clocks agree;
// Redis 7 replicates scripts by effects, so TIME is allowed. Each KEY is one hash per
// (principal, limit) whose fields are window periods and values TATs; all keys of one principal
// share a {hash tag}. Field values are "TAT:MAX" (MAX: the max the TAT was computed with; when a
// reload changes it, the TAT is rescaled so the units used so far are kept, as gcraRescale does).
//
// Expiry: every write of a key sets its TTL to its longest period + 1 s. An allowed charge leaves
// each window's TAT at most one period ahead of now, so a key never expires while one of its TATs
// is in the future, and it expires at most its longest period + 1 s after its last charge.
//
// KEYS: one per charge.
// ARGV[1] = now in µs, decimal ("0": use TIME; tests inject a clock);
// ARGV[2] = the struct.unpack format of ARGV[3]: "<" and one "d" per number;
// ARGV[3] = the numbers, little-endian IEEE doubles (each an integer below 2^53, so exact):
//   commit (1/0), then per charge: enforce (1/0), window count, then per window: period (µs),
//   increment (µs: gcraIncrement(cost, window), or -1 when cost > max: never fits);
// ARGV[4...] = per charge, decimal: the key's TTL in ms (longest period + 1 s), each window's
//   period in µs (its hash field), then each window's max (compared with the stored MAX as
//   text, and written after the TAT).
// Numbers travel packed because every argument and every string-to-number conversion costs
// Redis CPU (bench/policyd/RESULTS.md); strings are passed where Redis needs strings.
// Returns {committed, allowed_1, retry_us_1, allowed_2, retry_us_2, ...}.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "policyd/rate_store.h"

namespace relaykit::policy {

inline constexpr const char* kRateLimitScript = R"LUA(
local argv = ARGV
local keys = KEYS
local call = redis.call
local match = string.match
local now
if argv[1] == '0' then
  local t = call('TIME')
  now = t[1] * 1000000 + t[2]
else
  now = tonumber(argv[1])
end
local num = {struct.unpack(argv[2], argv[3])}
local commit = num[1] == 1
local nkeys = #keys
local out = {0}
local blocked = false
local q = 2
local a = 4
for i = 1, nkeys do
  local enforce = num[q] == 1
  local n = num[q + 1]
  q = q + 2
  local vals
  if n == 1 then
    vals = call('HMGET', keys[i], argv[a + 1])
  elseif n > 1 then
    vals = call('HMGET', keys[i], unpack(argv, a + 1, a + n))
  end
  local allowed = true
  local retry = 0
  for w = 1, n do
    local period = num[q]
    local inc = num[q + 1]
    q = q + 2
    local tat = now
    local v = vals[w]
    if v then
      local t, m = match(v, '^(%d+):(%d+)$')
      if t then
        t = tonumber(t)
        if t > now then
          tat = t
          local max = argv[a + n + w]
          if m ~= max then
            tat = now + math.floor((t - now) * tonumber(m) / tonumber(max))
          end
        end
      end
    end
    if inc < 0 then
      -- Never fits: refused before any increment is computed (gcraCheck does the same).
      allowed = false
      if period > retry then retry = period end
    else
      tat = tat + inc
      local ahead = tat - now - period
      if ahead > 0 then
        allowed = false
        if ahead > retry then retry = ahead end
      end
    end
    num[q - 1] = tat  -- the increment's slot now holds the new TAT (read when writing)
  end
  a = a + 1 + 2 * n
  if not allowed and enforce then blocked = true end
  out[2 * i] = allowed and 1 or 0
  out[2 * i + 1] = retry
end
if commit and not blocked then
  out[1] = 1
  -- '%.0f', not '%d': Lua's '%d' goes through a C long, 32 bits on some Redis hosts.
  local fmt = string.format
  q = 2
  a = 4
  for i = 1, nkeys do
    local n = num[q + 1]
    if n > 0 and out[2 * i] == 1 then
      if n == 1 then
        call('HSET', keys[i], argv[a + 1], fmt('%.0f:%s', num[q + 3], argv[a + 2]))
      else
        local f = {}
        for w = 1, n do
          f[2 * w - 1] = argv[a + w]
          f[2 * w] = fmt('%.0f:%s', num[q + 2 * w + 1], argv[a + n + w])
        end
        call('HSET', keys[i], unpack(f))
      end
      call('PEXPIRE', keys[i], argv[a])
    end
    q = q + 2 + 2 * n
    a = a + 1 + 2 * n
  end
end
return out
)LUA";

// The TTL (ms) a key of `windows` gets when written: its longest period, rounded up, + 1 s.
inline std::int64_t rateKeyTtlMs(const std::vector<RateWindow>& windows) {
  std::int64_t longest = 0;
  for (const RateWindow& w : windows) {
    longest = std::max(longest, w.periodUs);
  }
  return (longest + 999) / 1000 + 1000;
}

// Appends the script's numkeys, KEYS (each `keyPrefix` + charge key) and ARGV for `request` to
// `args`, as laid out above; `nowUs` 0 lets the script read Redis's clock.
inline void appendRateScriptArgs(const StoreRequest& request, const std::string& keyPrefix,
                                 std::int64_t nowUs, std::vector<std::string>* args) {
  std::string numbers;
  std::size_t count = 0;
  auto put = [&numbers, &count](double value) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(bits));
    for (int i = 0; i < 8; ++i) {
      numbers.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
    }
    ++count;
  };
  std::vector<std::string> strings;
  put(request.commit ? 1 : 0);
  for (const StoreCharge& c : request.charges) {
    put(c.enforce ? 1 : 0);
    put(static_cast<double>(c.windows.size()));
    strings.push_back(std::to_string(rateKeyTtlMs(c.windows)));
    for (const RateWindow& w : c.windows) {
      put(static_cast<double>(w.periodUs));
      put(c.cost > w.max ? -1.0 : static_cast<double>(gcraIncrement(c.cost, w)));
      strings.push_back(std::to_string(w.periodUs));
    }
    for (const RateWindow& w : c.windows) {
      strings.push_back(std::to_string(w.max));
    }
  }
  args->push_back(std::to_string(request.charges.size()));
  for (const StoreCharge& c : request.charges) {
    args->push_back(keyPrefix + c.key);
  }
  args->push_back(std::to_string(nowUs));
  args->push_back("<" + std::string(count, 'd'));
  args->push_back(std::move(numbers));
  for (std::string& s : strings) {
    args->push_back(std::move(s));
  }
}

}  // namespace relaykit::policy

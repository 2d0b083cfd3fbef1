-- SPDX-License-Identifier: Apache-2.0
-- The rate-limit script as it was before the 2026-12-07 rework (hash layout, same semantics);
-- bench/policyd/script_cost.py drives it beside policyd/redis_script.h's current script.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local commit = ARGV[2] == '1'
local pos = 3
local out = {0}
local plans = {}
local blocked = false
for i = 1, #KEYS do
  local enforce = ARGV[pos] == '1'
  local cost = tonumber(ARGV[pos + 1])
  local n = tonumber(ARGV[pos + 2])
  pos = pos + 3
  local allowed = true
  local retry = 0
  local writes = {}
  local maxtat = 0
  local fields = {}
  local maxes = {}
  for w = 1, n do
    maxes[w] = tonumber(ARGV[pos])
    fields[w] = ARGV[pos + 1]
    pos = pos + 2
  end
  local tats = redis.call('HMGET', KEYS[i], unpack(fields))
  for w = 1, n do
    local max = maxes[w]
    local period = tonumber(fields[w])
    local tat = 0
    if tats[w] then
      local t, m = string.match(tats[w], '^(%d+):(%d+)$')
      tat = tonumber(t) or 0
      m = tonumber(m) or max
      if m ~= max and tat > now then
        tat = now + math.floor((tat - now) * m / max)
      end
    end
    local base = math.max(tat, now)
    local newtat = base
    if cost > max then
      -- Never fits: refused before any increment is computed (gcraCheck does the same).
      allowed = false
      retry = math.max(retry, period)
    else
      newtat = base + math.floor(cost * period / max)
      if newtat - now > period then
        allowed = false
        retry = math.max(retry, newtat - now - period)
      end
    end
    if commit then
      writes[#writes + 1] = fields[w]
      writes[#writes + 1] = string.format('%.0f:%d', newtat, max)
      maxtat = math.max(maxtat, newtat)
    end
  end
  if not allowed and enforce then
    blocked = true
  end
  plans[i] = {allowed, writes, maxtat}
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = retry
end
if commit and not blocked then
  out[1] = 1
  for i = 1, #KEYS do
    local p = plans[i]
    if p[1] and #p[2] > 0 then
      redis.call('HSET', KEYS[i], unpack(p[2]))
      -- Every window of a key is written together and TATs only grow, so this write's
      -- largest TAT is the key's: it expires once all its windows are empty again.
      redis.call('PEXPIRE', KEYS[i], math.floor((p[3] - now) / 1000) + 1000)
    end
  end
end
return out

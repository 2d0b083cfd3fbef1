-- SPDX-License-Identifier: Apache-2.0
-- The rate-limit script of the first rework (2026-12-07), before policyd packed its numbers into
-- one argument and set each key's TTL to its longest period + 1 s. Its arguments are the "before"
-- layout of bench/policyd/script_cost.py (now, commit, then per charge enforce, cost, window count,
-- max and period per window); script_cost.py drives it beside rate_script_before.lua and
-- policyd/redis_script.h's current script.
local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end
local commit = ARGV[2] == '1'
local nkeys = #KEYS
local out = {0}
local pend = {}
local np = 0
local blocked = false
local pos = 3
for i = 1, nkeys do
  local enforce = ARGV[pos] == '1'
  local cost = tonumber(ARGV[pos + 1])
  local n = tonumber(ARGV[pos + 2])
  pos = pos + 3
  local tats
  if n == 1 then
    tats = redis.call('HMGET', KEYS[i], ARGV[pos + 1])
  else
    local f = {}
    for w = 1, n do
      f[w] = ARGV[pos + 2 * w - 1]
    end
    tats = redis.call('HMGET', KEYS[i], unpack(f))
  end
  local allowed = true
  local retry = 0
  local maxtat = 0
  local start = np
  for w = 1, n do
    local max = tonumber(ARGV[pos])
    local field = ARGV[pos + 1]
    pos = pos + 2
    local period = tonumber(field)
    local tat = 0
    local v = tats[w]
    if v then
      local t, m = string.match(v, '^(%d+):(%d+)$')
      if t then
        tat = tonumber(t)
        m = tonumber(m)
        if m ~= max and tat > now then
          tat = now + math.floor((tat - now) * m / max)
        end
      end
    end
    local newtat = tat > now and tat or now
    if cost > max then
      -- Never fits: refused before any increment is computed (gcraCheck does the same).
      allowed = false
      if period > retry then retry = period end
    else
      newtat = newtat + math.floor(cost * period / max)
      local ahead = newtat - now - period
      if ahead > 0 then
        allowed = false
        if ahead > retry then retry = ahead end
      end
    end
    if commit then
      pend[np + 1] = field
      pend[np + 2] = string.format('%.0f:%d', newtat, max)
      np = np + 2
      if newtat > maxtat then maxtat = newtat end
    end
  end
  if commit then
    if allowed then
      pend[np + 1] = maxtat
      pend[np + 2] = start
      np = np + 2
    else
      np = start
      if enforce then blocked = true end
    end
  end
  out[2 * i] = allowed and 1 or 0
  out[2 * i + 1] = retry
end
if commit and not blocked then
  out[1] = 1
  -- pend holds, per allowed key in KEYS order, its field, value pairs then its largest TAT and
  -- the index its pairs start after: walked backwards from the end.
  local e = np
  for i = nkeys, 1, -1 do
    if out[2 * i] == 1 then
      local s = pend[e]
      if e - 2 > s then
        redis.call('HSET', KEYS[i], unpack(pend, s + 1, e - 2))
        -- Every window of a key is written together and TATs only grow, so this write's
        -- largest TAT is the key's: it expires once all its windows are empty again.
        redis.call('PEXPIRE', KEYS[i], math.floor((pend[e - 1] - now) / 1000) + 1000)
      end
      e = s
    end
  end
end
return out

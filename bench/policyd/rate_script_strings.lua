-- SPDX-License-Identifier: Apache-2.0
-- rate_script_strings.lua: the rate-limit script over one STRING key per charge, a candidate
-- measured by bench/policyd/script_cost.py and not adopted (bench/policyd/RESULTS.md).
-- Each key's value is binary: per window three little-endian IEEE doubles, period (µs), TAT (µs),
-- MAX (every one an integer below 2^53, so exact on every Redis build), 24 bytes per window.
-- All keys are read by one MGET and each charged key written by one SET ... PX (TTL: the key's
-- longest period + 1 s). A value that is not a whole number of windows reads as empty; a window
-- whose period is not stored reads as empty; stored windows the request no longer names are kept
-- while their TAT is ahead (a reload that removes a window and puts it back keeps its state).
-- ARGV[1] = now in µs, decimal ("0": use TIME);
-- ARGV[2] = the struct.unpack format of ARGV[3]: "<" and one "d" per number;
-- ARGV[3] = commit (1/0), then per charge: enforce (1/0), window count, then per window: period,
--   increment (-1: never fits), max;
-- ARGV[3 + i] = charge i's TTL in ms, decimal.
-- Returns {committed, allowed_1, retry_us_1, ...}.
local argv = ARGV
local keys = KEYS
local call = redis.call
local unpackv = struct.unpack
local now
if argv[1] == '0' then
  local t = call('TIME')
  now = t[1] * 1000000 + t[2]
else
  now = tonumber(argv[1])
end
local num = {unpackv(argv[2], argv[3])}
local commit = num[1] == 1
local nkeys = #keys
local vals = call('MGET', unpack(keys))
local out = {0}
local blocked = false
local q = 2
for i = 1, nkeys do
  local enforce = num[q] == 1
  local n = num[q + 1]
  q = q + 2
  local v = vals[i]
  local len = 0
  if v then
    len = #v
    if len % 24 ~= 0 then
      len = 0
    end
  end
  -- exact: the stored windows are the request's, in its order (or none are stored)
  local exact = len == 0 or len == 24 * n
  local allowed = true
  local retry = 0
  for w = 1, n do
    local period = num[q]
    local inc = num[q + 1]
    local max = num[q + 2]
    q = q + 3
    local tat = now
    if len > 0 then
      local p, t, m
      if 24 * w <= len then
        p, t, m = unpackv('<ddd', v, 24 * w - 23)
      end
      if p ~= period then
        exact = false
        t = nil
        for pos = 1, len, 24 do
          p, t, m = unpackv('<ddd', v, pos)
          if p == period then break end
          t = nil
        end
      end
      if t and t > now then
        tat = t
        if m ~= max then
          tat = now + math.floor((t - now) * m / max)
        end
      end
    end
    if inc < 0 then
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
    num[q - 2] = tat  -- the increment's slot now holds the new TAT (read when writing)
  end
  if not allowed and enforce then blocked = true end
  out[2 * i] = allowed and 1 or 0
  out[2 * i + 1] = retry
  if exact then vals[i] = false end  -- vals[i] left set: a value whose other windows are kept
end
if commit and not blocked then
  out[1] = 1
  local pack = struct.pack
  q = 2
  for i = 1, nkeys do
    local n = num[q + 1]
    if n > 0 and out[2 * i] == 1 then
      local value
      if n == 1 then
        value = pack('<ddd', num[q + 2], num[q + 3], num[q + 4])
      else
        value = pack('<' .. string.rep('ddd', n), unpack(num, q + 2, q + 1 + 3 * n))
      end
      local v = vals[i]
      if v then
        -- The stored value had other windows: keep those the request does not name.
        if #v % 24 == 0 then
          for pos = 1, #v, 24 do
            local p, t, m = unpackv('<ddd', v, pos)
            local named = false
            for w = 0, n - 1 do
              if num[q + 2 + 3 * w] == p then named = true break end
            end
            if not named and t > now then
              value = value .. pack('<ddd', p, t, m)
            end
          end
        end
      end
      call('SET', keys[i], value, 'PX', argv[3 + i])
    end
    q = q + 2 + 3 * n
  end
end
return out

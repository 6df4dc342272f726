-- The fleet-wide rate budget: one grant, or how long to wait for one.
-- KEYS: grant log, urgent flag, last bulk grant. ARGV: limit, window µs, lane (u|b),
-- bulk spacing µs (0 = none reserved), flag TTL ms.
-- Returns 0 when granted, else the µs to wait before asking again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local urgent = ARGV[3] == 'u'
local len = redis.call('LLEN', KEYS[1])
local wait = 0
if len >= limit then
  wait = tonumber(redis.call('LINDEX', KEYS[1], 0)) + window - now
end
if not urgent and redis.call('EXISTS', KEYS[2]) == 1 then
  local spacing = tonumber(ARGV[4])
  if spacing <= 0 then
    wait = math.max(wait, tonumber(ARGV[5]) * 1000)
  else
    local last = tonumber(redis.call('GET', KEYS[3]) or '0')
    wait = math.max(wait, last + spacing - now)
  end
end
if wait > 0 then
  if urgent then redis.call('SET', KEYS[2], '1', 'PX', ARGV[5]) end
  return wait
end
redis.call('RPUSH', KEYS[1], now)
while redis.call('LLEN', KEYS[1]) > limit do redis.call('LPOP', KEYS[1]) end
redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
if not urgent then redis.call('SET', KEYS[3], now, 'PX', 60000) end
return 0

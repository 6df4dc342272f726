-- The fleet-wide rate budgets of the accounts: one grant from the first account, in the order
-- given, that can serve now, or how long to wait for one.
-- KEYS, 7 per account: grant log, urgent flag, last bulk grant, session hash, breaker, recent
-- grants, waiting callers (only the first account's is used: the one the caller prefers).
-- ARGV: accounts, window µs, lane (u|b), flag TTL ms, waiter id; then 3 per account: limit
-- (0 = unlimited), bulk spacing µs (0 = none reserved), needs a session in Redis (1|0).
-- Returns {account (from 1), 0, session token} when granted; {0, µs to wait, ''} when every
-- usable account is spent for now; {-1, µs to wait, ''} when no account is usable (no valid
-- session, breaker open).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local urgent = ARGV[3] == 'u'
local flag_ttl = tonumber(ARGV[4])
local waiter = ARGV[5]
local best = nil
local blocked = nil
for i = 1, n do
  local k = (i - 1) * 7
  local a = 5 + (i - 1) * 3
  local limit, spacing, needs = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3] == '1'
  local usable, token = true, ''
  local open = redis.call('PTTL', KEYS[k + 5])
  if open > 0 then
    usable = false
    if blocked == nil or open * 1000 < blocked then blocked = open * 1000 end
  end
  if usable and needs then
    local s = redis.call('HMGET', KEYS[k + 4], 'token', 'expires_us')
    if not s[1] or (s[2] and tonumber(s[2]) <= now) then
      usable = false
    else
      token = s[1]
    end
  end
  if usable then
    local wait = 0
    if limit > 0 and redis.call('LLEN', KEYS[k + 1]) >= limit then
      wait = tonumber(redis.call('LINDEX', KEYS[k + 1], 0)) + window - now
    end
    if not urgent and redis.call('EXISTS', KEYS[k + 2]) == 1 then
      if spacing <= 0 then
        wait = math.max(wait, flag_ttl * 1000)
      else
        local last = tonumber(redis.call('GET', KEYS[k + 3]) or '0')
        wait = math.max(wait, last + spacing - now)
      end
    end
    if wait <= 0 then
      if limit > 0 then
        redis.call('RPUSH', KEYS[k + 1], now)
        while redis.call('LLEN', KEYS[k + 1]) > limit do redis.call('LPOP', KEYS[k + 1]) end
        redis.call('PEXPIRE', KEYS[k + 1], math.floor(window / 1000) + 1000)
      end
      if not urgent then redis.call('SET', KEYS[k + 3], now, 'PX', 60000) end
      redis.call('ZADD', KEYS[k + 6], now, now .. ':' .. waiter)
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 6], '-inf', now - 60000000)
      redis.call('PEXPIRE', KEYS[k + 6], 61000)
      redis.call('ZREM', KEYS[7], waiter)
      return {i, 0, token}
    end
    if urgent then redis.call('SET', KEYS[k + 2], '1', 'PX', flag_ttl) end
    if best == nil or wait < best then best = wait end
  end
end
-- Not granted: the caller waits, counted against the account it prefers.
redis.call('ZADD', KEYS[7], now + 3000000, waiter)
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
redis.call('PEXPIRE', KEYS[7], 10000)
if best ~= nil then return {0, best, ''} end
return {-1, blocked or 1000000, ''}

-- Drops the pending (scheduled or due, not running) backfill jobs of one token, with their data
-- and meta. KEYS: scheduled set, active list, data hash. ARGV: token, meta key prefix.
-- Returns how many went.
local token = tonumber(ARGV[1])
local meta = ARGV[2]
local n = 0
local function ours(id)
  local raw = redis.call('HGET', KEYS[3], id)
  if not raw then return false end
  local ok, d = pcall(cjson.decode, raw)
  return ok and type(d) == 'table' and type(d.job) == 'table'
    and d.job.kind == 'backfill' and tonumber(d.job.token) == token
end
local function drop(id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('DEL', meta .. ':' .. id)
  n = n + 1
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if ours(id) then redis.call('ZREM', KEYS[1], id); drop(id) end
end
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if ours(id) then redis.call('LREM', KEYS[2], 0, id); drop(id) end
end
return n

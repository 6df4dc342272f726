-- Cancels queued jobs by id: each one still scheduled or due (not running) is dropped with its
-- data and meta. KEYS: scheduled set, active list, data hash. ARGV: meta key prefix, then ids.
-- Returns, per id, 1 when it was cancelled, 0 when it was no longer waiting (running, or gone).
local meta = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local gone = redis.call('ZREM', KEYS[1], id) + redis.call('LREM', KEYS[2], 0, id)
  if gone > 0 then
    redis.call('HDEL', KEYS[3], id)
    redis.call('DEL', meta .. ':' .. id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out

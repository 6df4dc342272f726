-- Moves up to ARGV[2] due ids (score <= ARGV[1]) from the scheduled set to the active list and
-- signals the workers. KEYS: scheduled set, active list, signal list. Returns how many moved.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
end
return #ids

-- Hands a stopping worker's claimed jobs back to the head of the active list, forgets their
-- start counters and unregisters the worker. KEYS: the worker's in-flight set, active list,
-- workers set, signal list. ARGV: worker name, start-counter key prefix. Returns how many moved.
local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do
  redis.call('LPUSH', KEYS[2], id)
  redis.call('DEL', ARGV[2] .. id)
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if #ids > 0 then redis.call('DEL', KEYS[4]); redis.call('LPUSH', KEYS[4], 1) end
return #ids

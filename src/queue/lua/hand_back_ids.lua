-- Hands chosen ids of a live worker's in-flight set back to the head of the active list and
-- forgets their start counters (they spend no attempt). KEYS: the in-flight set, active list,
-- signal list. ARGV: start-counter key prefix, then the ids. Returns how many moved (an id no
-- longer in the set, because its worker finished it meanwhile, is left alone).
local moved = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('LPUSH', KEYS[2], id)
    redis.call('DEL', ARGV[1] .. id)
    moved = moved + 1
  end
end
if moved > 0 then redis.call('DEL', KEYS[3]); redis.call('LPUSH', KEYS[3], 1) end
return moved

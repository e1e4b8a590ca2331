-- ARGV: count, then per record: identity ("kind\nkey"), stamped_at, record JSON, payload.
-- All or nothing: {-1, index} when a key was used before for a different payload,
-- else one flag per record: 0 added, 1 duplicate of what is already held.
local count = tonumber(ARGV[1])
local seen, flags = {}, {}
for r = 0, count - 1 do
  local identity, payload = ARGV[2 + r * 4], ARGV[5 + r * 4]
  local prior = seen[identity]
  if prior == nil then
    local id = redis.call('HGET', idx, identity)
    if id then prior = redis.call('HGET', pay, id) end
  end
  if prior and prior ~= payload then return {-1, r} end
  if prior then
    flags[r + 1] = 1
  else
    flags[r + 1] = 0
    seen[identity] = payload
  end
end
for r = 0, count - 1 do
  if flags[r + 1] == 0 then
    local identity, stamped = ARGV[2 + r * 4], ARGV[3 + r * 4]
    local id = tostring(redis.call('INCR', seq))
    redis.call('HSET', idx, identity, id)
    redis.call('HSET', ident, id, identity)
    redis.call('HSET', rec, id, ARGV[4 + r * 4])
    redis.call('HSET', pay, id, ARGV[5 + r * 4])
    redis.call('ZADD', pending, stamped, id)
    redis.call('ZADD', lanes[string.match(identity, '^(%a+)\n')].ready, id, id)
  end
end
return flags

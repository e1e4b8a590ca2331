-- ARGV: expected feed_seq ("": enqueue whatever moved), admitted ("1" or "0"), count, then
-- per record: identity ("kind\nkey"), stamped_at, record JSON, payload.
-- All or nothing: {-1, index} when a key was used before for a different payload, else
-- when every key is new: {-3} if not admitted, {-2} if the feed moved past "expected"
-- (a consumption judged on usage that changed since: judge again), else one flag per
-- record: 0 added, 1 duplicate of what is already held.
local expected, admitted, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local seen, flags, fresh = {}, {}, 0
for r = 0, count - 1 do
  local identity, payload = ARGV[4 + r * 4], ARGV[7 + r * 4]
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
    fresh = fresh + 1
    seen[identity] = payload
  end
end
if fresh == count and count > 0 then
  if admitted ~= '1' then return {-3} end
  if expected ~= '' and (redis.call('GET', feed_seq) or '0') ~= expected then return {-2} end
end
for r = 0, count - 1 do
  if flags[r + 1] == 0 then
    local identity, stamped = ARGV[4 + r * 4], ARGV[5 + r * 4]
    local id = tostring(redis.call('INCR', seq))
    redis.call('HSET', idx, identity, id)
    redis.call('HSET', ident, id, identity)
    redis.call('HSET', rec, id, ARGV[6 + r * 4])
    redis.call('HSET', pay, id, ARGV[7 + r * 4])
    redis.call('ZADD', pending, stamped, id)
    redis.call('ZADD', lanes[string.match(identity, '^(%a+)\n')].ready, id, id)
    moved(id)
  end
end
return flags

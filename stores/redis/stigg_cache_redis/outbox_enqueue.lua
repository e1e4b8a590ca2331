-- ARGV: expected feed_seq ("": enqueue whatever moved), admitted ("1" or "0"), count, then
-- per record: identity ("kind\ncustomer\nkey"), stamped_at, record JSON, payload, customer id
-- ("": not indexed by customer), restamped ("1": the caller left the stamp to us, so a retry
-- that differs from the held record in its stamp alone is that record again); last, the
-- environment token (see refuse_foreign).
-- All or nothing: {-1, index} when a key was used before for a different payload, else
-- when every key is new: {-3} if not admitted, {-2} if the feed moved past "expected"
-- (a consumption judged on usage that changed since: judge again), else one flag per
-- record: 0 added, 1 duplicate of what is already held.
local expected, admitted, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local seen, flags, fresh = {}, {}, 0
local foreign = refuse_foreign(ARGV[4 + count * 6])
if foreign then return foreign end
-- A payload without its stamp, as records.py's same_usage() takes it off: a usage record's
-- first "createdAt", an event's last field, "timestamp".
local function unstamped(identity, payload)
  if string.match(identity, '^(%a+)\n') == 'usage' then
    return (string.gsub(payload, ',"createdAt":"[^"]*"', '', 1))
  end
  return (string.gsub(payload, ',"timestamp":"[^"]*"}$', '}', 1))
end
for r = 0, count - 1 do
  local identity, payload, restamped = ARGV[4 + r * 6], ARGV[7 + r * 6], ARGV[9 + r * 6]
  local prior = seen[identity]
  if prior == nil then
    local id = redis.call('HGET', idx, identity)
    if id then prior = redis.call('HGET', pay, id) end
  end
  if prior and prior ~= payload and not (
      restamped == '1' and unstamped(identity, prior) == unstamped(identity, payload)) then
    return {-1, r}
  end
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
    local identity, stamped = ARGV[4 + r * 6], ARGV[5 + r * 6]
    local id = next_of(seq)
    redis.call('HSET', idx, identity, id)
    redis.call('HSET', ident, id, identity)
    redis.call('HSET', rec, id, ARGV[6 + r * 6])
    redis.call('HSET', pay, id, ARGV[7 + r * 6])
    local customer = ARGV[8 + r * 6]  -- "": a record that cannot count as local usage
    if customer ~= '' then redis.call('ZADD', customers, 0, customer .. '\n' .. id) end
    redis.call('ZADD', pending, stamped, id)
    local kind = string.match(identity, '^(%a+)\n')
    make_ready(lanes[kind], id)
    local scope = kind == 'usage' and set_scope(ARGV[7 + r * 6])
    local latest = scope and redis.call('HGET', latest_set, scope)
    if scope and not (latest and tonumber(latest) >= tonumber(stamped)) then
      redis.call('HSET', latest_set, scope, stamped)
    end
    moved(id)
  end
end
return flags

-- ARGV: owner, now, retry_in (seconds on Redis's clock), reason, forget_sent_before, #sent,
-- #retry, #dead, #counted,
-- then an (id, identity) pair per record settled, then (id, identity, usage) per record
-- counted: what Stigg answered sent usage with. A record is its identity (kind, customer,
-- key), never its id alone: after a failover ids are given again, and the record that now
-- holds a sender's id is another host's usage.
local owner, now, reason, clock = ARGV[1], ARGV[2], ARGV[4], redis_now()
local retry_at = clock + tonumber(ARGV[3])
local n_sent, n_retry, n_dead = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local n_counted = tonumber(ARGV[9])
-- The id of the record the sender claimed, if it is held under that id still.
local function same(id, identity)
  return (redis.call('HGET', ident, id) or '') == identity and id or nil
end
-- Leased to this sender still: only the lease holder gives a record back or dead-letters it.
local function leased(id, identity)
  return same(id, identity) and redis.call('HGET', owners, id) == owner and id or nil
end
-- Delivered: the record under that key, whoever holds it or its lease now.
local function delivered(id, identity)
  return same(id, identity) or redis.call('HGET', idx, identity)
end
local at = 10 + 2 * (n_sent + n_retry + n_dead)
for i = at, at + 3 * n_counted - 1, 3 do
  local id = delivered(ARGV[i], ARGV[i + 1])
  if id and redis.call('ZSCORE', pending, id) then redis.call('HSET', counted, id, ARGV[i + 2]) end
end
at = 10
-- Delivered: never send it again. Nothing but its being pending is asked of the record,
-- so no lost part of it keeps it pending (and sent) for ever.
for i = at, at + 2 * n_sent - 1, 2 do
  local id = delivered(ARGV[i], ARGV[i + 1])
  if id and redis.call('ZSCORE', pending, id) then
    unqueue(id, kind_of(id))
    redis.call('ZREM', pending, id)
    redis.call('ZADD', sent, now, id)
    moved(id)
  end
end
at = at + 2 * n_sent
for i = at, at + 2 * n_retry - 1, 2 do
  local id = leased(ARGV[i], ARGV[i + 1])
  local kind = id and kind_of(id)
  if kind then
    unqueue(id, kind)
    redis.call('HINCRBY', att, id, 1)
    redis.call('ZADD', lanes[kind].delayed, retry_at, id)
    redis.call('ZADD', lanes[kind].delayed_since, clock, id)
  end
end
at = at + 2 * n_retry
for i = at, at + 2 * n_dead - 1, 2 do
  local id = leased(ARGV[i], ARGV[i + 1])
  local stamped = id and redis.call('ZSCORE', pending, id)
  if stamped then
    unqueue(id, kind_of(id))
    redis.call('ZREM', pending, id)
    free_key(id)
    local attempts = tonumber(redis.call('HGET', att, id) or '0') + 1
    redis.call('HDEL', att, id)
    redis.call('ZADD', dead, now, id)
    redis.call('HSET', dinfo, id, cjson.encode({reason, attempts, tonumber(stamped)}))
    moved(id)
  end
end
-- Sent records answer duplicate enqueues for a while, then go.
local old = redis.call('ZRANGEBYSCORE', sent, '-inf', '(' .. ARGV[5], 'LIMIT', 0, 1000)
for _, id in ipairs(old) do
  redis.call('ZREM', sent, id)
  forget(id)
end
return #old

-- ARGV: owner, now, retry_at, reason, forget_sent_before, #sent, #retry, #dead, #counted,
-- then the ids, then (id, usage) pairs: what Stigg answered sent usage with.
local owner, now, retry_at, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n_sent, n_retry, n_dead = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local n_counted = tonumber(ARGV[9])
local at = 10 + n_sent + n_retry + n_dead
for i = at, at + 2 * n_counted - 1, 2 do
  if redis.call('ZSCORE', pending, ARGV[i]) then redis.call('HSET', counted, ARGV[i], ARGV[i + 1]) end
end
at = 10
-- Delivered, whoever holds the lease now: never send it again. Nothing but its being
-- pending is asked of the record, so no lost part of it keeps it pending (and sent) for ever.
for i = at, at + n_sent - 1 do
  local id = ARGV[i]
  if redis.call('ZSCORE', pending, id) then
    unqueue(id, kind_of(id))
    redis.call('ZREM', pending, id)
    redis.call('ZADD', sent, now, id)
    moved(id)
  end
end
at = at + n_sent
-- Only the lease holder gives a record back for a later try.
for i = at, at + n_retry - 1 do
  local id = ARGV[i]
  local kind = kind_of(id)
  if kind and redis.call('HGET', owners, id) == owner then
    unqueue(id, kind)
    redis.call('HINCRBY', att, id, 1)
    redis.call('ZADD', lanes[kind].delayed, retry_at, id)
    redis.call('ZADD', lanes[kind].delayed_since, now, id)
  end
end
at = at + n_retry
for i = at, at + n_dead - 1 do
  local id = ARGV[i]
  local stamped = redis.call('ZSCORE', pending, id)
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

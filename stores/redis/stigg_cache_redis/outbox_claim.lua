-- ARGV: kind, limit, owner, lease_s, clock_step_s, now (the caller's: when a superseded SET
-- counts as sent), the environment token (see refuse_foreign). Leases are timed on Redis's
-- clock.
-- Returns id, record, payload, attempts, identity for each record leased, oldest first.
local lane = lanes[ARGV[1]]
local limit, owner, now = tonumber(ARGV[2]), ARGV[3], redis_now()
local lease_until, stepped_after = now + tonumber(ARGV[4]), now + tonumber(ARGV[5])
local foreign = refuse_foreign(ARGV[7])
if foreign then return foreign end
-- Retries whose time has come and leases that ran out are sendable again, as are
-- those set well after "now" (Redis's clock stepped back since).
local function release(id)
  redis.call('ZREM', lane.delayed, id)
  redis.call('ZREM', lane.leased, id)
  redis.call('ZREM', lane.delayed_since, id)
  redis.call('ZREM', lane.leased_since, id)
  redis.call('HDEL', owners, id)
  make_ready(lane, id)
end
for _, queue in ipairs({lane.delayed, lane.leased}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', queue, '-inf', now)) do release(id) end
end
for _, queue in ipairs({lane.delayed_since, lane.leased_since}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', queue, '(' .. stepped_after, '+inf')) do
    release(id)
  end
end
local out = {}
if limit < 1 then return out end
-- Superseded: an older SET than the newest of its scope is settled without being sent.
local function superseded(id)
  unqueue(id, ARGV[1])
  redis.call('ZREM', pending, id)
  redis.call('ZADD', sent, ARGV[6], id)
  moved(id)
end
-- Whether the record waits: a newer SET while an older one of its scope is being sent.
local function waits(id, scope)
  local sending = redis.call('HGET', set_sending, scope)
  return sending and sending ~= id and redis.call('ZSCORE', lane.leased, sending)
end
for _, id in ipairs(redis.call('ZRANGE', lane.ready, 0, 2 * limit - 1)) do
  if #out >= 5 * limit then break end
  local scope = ARGV[1] == 'usage' and set_scope(redis.call('HGET', pay, id))
  local latest = scope and redis.call('HGET', latest_set, scope)
  if latest and tonumber(latest) > tonumber(redis.call('ZSCORE', pending, id)) then
    superseded(id)
  elseif not (scope and waits(id, scope)) then
    if scope then redis.call('HSET', set_sending, scope, id) end
    redis.call('ZREM', lane.ready, id)
    redis.call('ZADD', lane.leased, lease_until, id)
    redis.call('ZADD', lane.leased_since, now, id)
    redis.call('HSET', owners, id, owner)
    table.insert(out, id)
    table.insert(out, redis.call('HGET', rec, id) or '')
    table.insert(out, redis.call('HGET', pay, id) or '')
    table.insert(out, redis.call('HGET', att, id) or '0')
    table.insert(out, redis.call('HGET', ident, id) or '')
  end
end
return out

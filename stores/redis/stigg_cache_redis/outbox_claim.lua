-- ARGV: kind, limit, owner, lease_s, clock_step_s. Leases are timed on Redis's clock.
-- Returns id, record, payload, attempts, identity for each record leased, oldest first.
local lane = lanes[ARGV[1]]
local limit, owner, now = tonumber(ARGV[2]), ARGV[3], redis_now()
local lease_until, stepped_after = now + tonumber(ARGV[4]), now + tonumber(ARGV[5])
-- Retries whose time has come and leases that ran out are sendable again, as are
-- those set well after "now" (Redis's clock stepped back since).
local function release(id)
  redis.call('ZREM', lane.delayed, id)
  redis.call('ZREM', lane.leased, id)
  redis.call('ZREM', lane.delayed_since, id)
  redis.call('ZREM', lane.leased_since, id)
  redis.call('HDEL', owners, id)
  redis.call('ZADD', lane.ready, id, id)
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
for _, id in ipairs(redis.call('ZRANGE', lane.ready, 0, limit - 1)) do
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
return out

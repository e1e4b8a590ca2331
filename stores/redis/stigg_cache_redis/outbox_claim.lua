-- ARGV: kind, limit, owner, now, lease_until.
-- Returns id, record, payload, attempts for each record leased, oldest first.
local lane = lanes[ARGV[1]]
local limit, owner, now, lease_until = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
-- Retries whose time has come and leases that ran out are sendable again.
for _, queue in ipairs({lane.delayed, lane.leased}) do
  local due = redis.call('ZRANGEBYSCORE', queue, '-inf', now)
  for _, id in ipairs(due) do
    redis.call('ZREM', queue, id)
    redis.call('HDEL', owners, id)
    redis.call('ZADD', lane.ready, id, id)
  end
end
local out = {}
if limit < 1 then return out end
for _, id in ipairs(redis.call('ZRANGE', lane.ready, 0, limit - 1)) do
  redis.call('ZREM', lane.ready, id)
  redis.call('ZADD', lane.leased, lease_until, id)
  redis.call('HSET', owners, id, owner)
  table.insert(out, id)
  table.insert(out, redis.call('HGET', rec, id) or '')
  table.insert(out, redis.call('HGET', pay, id) or '')
  table.insert(out, redis.call('HGET', att, id) or '0')
end
return out

-- ARGV: the event names that count as local usage. Indexes by customer, and scopes to its
-- customer the key of, each record moved in the feed after feed_indexed: a host of a
-- version before the index (or the scoping) may write after a newer one marked the outbox
-- done (outbox_index.lua, outbox_scope.lua). Nothing to do (one GET and an empty range)
-- while only this version writes. At most 1,000 moves a call; returns 1 while more wait.
local names = {}
for i = 1, #ARGV do names[ARGV[i]] = true end
local from = redis.call('GET', feed_indexed) or '-inf'
local found = redis.call('ZRANGEBYSCORE', feed, '(' .. from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #found, 2 do
  local id = found[i]
  local ok, body = pcall(cjson.decode, redis.call('HGET', pay, id) or '')
  if ok and type(body) == 'table' and type(body.customerId) == 'string' then
    local identity = redis.call('HGET', ident, id) or ''
    local kind, key = string.match(identity, '^(%a+)\n(.*)$')
    if kind and body.idempotencyKey == key then  -- "kind\nkey": not scoped yet
      local own = kind .. '\n' .. body.customerId .. '\n' .. key
      redis.call('HSET', ident, id, own)
      if redis.call('HGET', idx, identity) == id then
        redis.call('HDEL', idx, identity)
        redis.call('HSETNX', idx, own, id)
      end
    end
    if kind_of(id) == 'usage' or names[body.eventName] then
      redis.call('ZADD', customers, 0, body.customerId .. '\n' .. id)
    end
  end
end
if #found == 2000 then
  redis.call('SET', feed_indexed, found[#found])
  return 1
end
-- Caught up: the mark is at the feed's end again, where this version's moves keep it.
redis.call('SET', feed_indexed, redis.call('GET', feed_seq) or '0')
return 0

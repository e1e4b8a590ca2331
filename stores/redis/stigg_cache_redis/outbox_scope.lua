-- ARGV: a cursor of HSCAN over the identities. Scopes one batch of keys to their customer
-- ("kind\nkey" -> "kind\ncustomer\nkey", in the identities and in the index by identity),
-- for an outbox written before keys were scoped; returns the next cursor ("0": all done,
-- and the outbox is marked so). An identity scoped already is left as it is.
if redis.call('GET', scoped) == '1' then return '0' end
local scan = redis.call('HSCAN', ident, ARGV[1], 'COUNT', 500)
for i = 1, #scan[2], 2 do
  local id, identity = scan[2][i], scan[2][i + 1]
  local kind, key = string.match(identity, '^(%a+)\n(.*)$')
  local ok, body = pcall(cjson.decode, redis.call('HGET', pay, id) or '')
  if kind and ok and type(body) == 'table' and type(body.customerId) == 'string'
      and body.idempotencyKey == key then
    local own = kind .. '\n' .. body.customerId .. '\n' .. key
    redis.call('HSET', ident, id, own)
    if redis.call('HGET', idx, identity) == id then
      redis.call('HDEL', idx, identity)
      redis.call('HSETNX', idx, own, id)
    end
  end
end
if scan[1] == '0' then redis.call('SET', scoped, '1') end
return scan[1]

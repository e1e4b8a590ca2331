-- ARGV: a cursor of HSCAN over the payloads, then the event names that count as local usage.
-- Indexes one batch of records by customer (usage records, and events of those names), for
-- an outbox written before the index existed; returns the next cursor ("0": all indexed,
-- and the outbox is marked so).
if redis.call('GET', schema) == '2' then return '0' end
local counted = {}
for i = 2, #ARGV do counted[ARGV[i]] = true end
local scan = redis.call('HSCAN', pay, ARGV[1], 'COUNT', 500)
for i = 1, #scan[2], 2 do
  local id, payload = scan[2][i], scan[2][i + 1]
  local ok, body = pcall(cjson.decode, payload)
  if ok and type(body) == 'table' and type(body.customerId) == 'string'
      and (kind_of(id) == 'usage' or counted[body.eventName]) then
    redis.call('ZADD', customers, 0, body.customerId .. '\n' .. id)
  end
end
if scan[1] == '0' then redis.call('SET', schema, '2') end
return scan[1]

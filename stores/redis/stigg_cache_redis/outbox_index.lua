-- ARGV: a cursor of HSCAN over the payloads. Indexes one batch of records by customer, for
-- an outbox written before the index existed; returns the next cursor ("0": all indexed,
-- and the outbox is marked so).
if redis.call('GET', schema) == '2' then return '0' end
local scan = redis.call('HSCAN', pay, ARGV[1], 'COUNT', 500)
for i = 1, #scan[2], 2 do
  local id = scan[2][i]
  local customer = customer_of(id)
  if customer then redis.call('ZADD', customers, 0, customer .. '\n' .. id) end
end
if scan[1] == '0' then redis.call('SET', schema, '2') end
return scan[1]

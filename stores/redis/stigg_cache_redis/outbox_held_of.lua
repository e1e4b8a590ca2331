-- ARGV: customer id. That customer's records still held (pending or sent): per record, id,
-- acked_at ("" if not acknowledged), record, payload, counted ("" if not known).
local out = {}
local prefix = ARGV[1] .. '\n'
local found = redis.call('ZRANGEBYLEX', customers, '[' .. prefix, '[' .. prefix .. '\255')
for _, member in ipairs(found) do
  local id = string.sub(member, #prefix + 1)
  local acked = redis.call('ZSCORE', sent, id)
  if acked or redis.call('ZSCORE', pending, id) then
    table.insert(out, id)
    table.insert(out, acked or '')
    table.insert(out, redis.call('HGET', rec, id) or '')
    table.insert(out, redis.call('HGET', pay, id) or '')
    table.insert(out, redis.call('HGET', counted, id) or '')
  end
end
return out

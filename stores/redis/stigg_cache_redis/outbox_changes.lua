-- ARGV: after. What moved local usage since feed sequence number "after" (-1: all held):
-- the current sequence number, then per record: id, state ("held" or "dead"), acked_at
-- ("" if not acknowledged), record, payload, counted ("" if not known), identity.
local out = {redis.call('GET', feed_seq) or '0'}
local found = redis.call('ZRANGEBYSCORE', feed, '(' .. ARGV[1], '+inf')
for _, id in ipairs(found) do
  local state, acked = nil, redis.call('ZSCORE', sent, id)
  if acked or redis.call('ZSCORE', pending, id) then
    state = 'held'
  elseif redis.call('ZSCORE', dead, id) then
    state = 'dead'
  end
  if state then
    table.insert(out, id)
    table.insert(out, state)
    table.insert(out, acked or '')
    table.insert(out, redis.call('HGET', rec, id) or '')
    table.insert(out, redis.call('HGET', pay, id) or '')
    table.insert(out, redis.call('HGET', counted, id) or '')
    table.insert(out, redis.call('HGET', ident, id) or '')
  end
end
return out

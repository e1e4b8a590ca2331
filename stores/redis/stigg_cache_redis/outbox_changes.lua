-- ARGV: after, the epoch of the feed the caller follows ("": none yet). What moved local
-- usage since feed sequence number "after" (-1: all held): the current sequence number, the
-- feed's epoch, 1 if the feed was read whole for a reset (else 0), then per record: id, state
-- ("held" or "dead"), acked_at ("" if not acknowledged), record, payload, counted ("" if
-- not known), identity. A feed of another epoch (Redis restarted empty) or behind "after"
-- (a failover lost its last moves) is read whole; one behind is set to "after", so the
-- moves to come are after every cursor.
local after, epoch = ARGV[1], redis.call('GET', feed_epoch)
local current = redis.call('GET', feed_seq) or '0'
local reset = 0
if epoch and ((ARGV[2] ~= '' and ARGV[2] ~= epoch) or tonumber(current) < tonumber(after)) then
  if tonumber(current) < tonumber(after) then
    redis.call('SET', feed_seq, after)
    current = after
  end
  after, reset = '-1', 1
end
local out = {current, epoch or '', reset}
local found = redis.call('ZRANGEBYSCORE', feed, '(' .. after, '+inf')
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

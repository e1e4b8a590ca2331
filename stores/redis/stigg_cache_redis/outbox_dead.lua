-- ARGV: action ("requeue" or "purge"), then dead-letter ids (none: all of them).
-- Requeue keeps the record's time (so it is sent before newer ones). A dead letter whose
-- key was enqueued again meanwhile is dropped if that record is the same usage (it is
-- in the outbox already) and kept if it is other usage under the key, as in SQLite.
local ids = {}
if #ARGV == 1 then
  ids = redis.call('ZRANGE', dead, 0, -1)
else
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local done = 0
for _, id in ipairs(ids) do
  local info = redis.call('HGET', dinfo, id)
  if info and redis.call('ZSCORE', dead, id) then
    local identity = redis.call('HGET', ident, id)
    local holder = identity and redis.call('HGET', idx, identity)
    local other_usage = holder and redis.call('HGET', pay, holder) ~= redis.call('HGET', pay, id)
    if ARGV[1] == 'purge' or not other_usage then
      redis.call('ZREM', dead, id)
      redis.call('HDEL', dinfo, id)
      if ARGV[1] == 'requeue' and identity and not holder then
        redis.call('HSET', idx, identity, id)
        redis.call('ZADD', pending, cjson.decode(info)[3], id)
        make_ready(lanes[string.match(identity, '^(%a+)\n')], id)
        moved(id)
        done = done + 1
      else
        forget(id)
        if ARGV[1] == 'purge' then done = done + 1 end
      end
    end
  end
end
return done

-- Shared by every outbox script. KEYS, in this order (all under one hash tag):
local seq, rec, pay, ident, idx, att = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local pending, sent, dead, dinfo, owners = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
-- Per kind: ready (score = the record's own time, so oldest first wherever it waited before
-- it came: a record moved from a host's local outbox keeps its place), delayed (score = retry time),
-- leased (score = lease end), and when each delay and lease was set, all on Redis's clock:
-- a time set "in the future" means its clock has since stepped back, and the record is
-- sendable again rather than stranded until the clock catches up.
local lanes = {
  event = {ready = KEYS[12], delayed = KEYS[13], leased = KEYS[14],
           delayed_since = KEYS[18], leased_since = KEYS[19]},
  usage = {ready = KEYS[15], delayed = KEYS[16], leased = KEYS[17],
           delayed_since = KEYS[20], leased_since = KEYS[21]},
}

-- Redis's clock, in seconds: leases and retry times are set and compared on it, never on a
-- host's (a host whose clock runs ahead would take live leases).
local function redis_now()
  local now = redis.call('TIME')
  return tonumber(now[1]) + tonumber(now[2]) / 1000000
end

-- "event\ncustomer\nkey" (or the record, "event\nstamp", if that entry is lost) -> "event"
local function kind_of(id)
  local identity = redis.call('HGET', ident, id) or redis.call('HGET', rec, id)
  if not identity then return nil end
  return string.match(identity, '^(%a+)\n')
end

-- Out of every queue of its lane, or of both if its kind is lost (still held as a record).
local function unqueue(id, kind)
  for name, lane in pairs(lanes) do
    if kind == nil or lanes[kind] == nil or kind == name then
      redis.call('ZREM', lane.ready, id)
      redis.call('ZREM', lane.delayed, id)
      redis.call('ZREM', lane.leased, id)
      redis.call('ZREM', lane.delayed_since, id)
      redis.call('ZREM', lane.leased_since, id)
    end
  end
  redis.call('HDEL', owners, id)
end

-- A counter's next value, as a string (record ids, the feed's sequence numbers). One a Redis
-- lost (restarted empty) starts again at Redis's time in microseconds: above every value it
-- had, so no id is given twice and the new feed is after every host's cursor.
local function next_of(key)
  if redis.call('EXISTS', key) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', key, now[1] .. string.format('%06d', tonumber(now[2])))
  end
  return string.format('%d', redis.call('INCR', key))
end

-- Every process follows what moves local usage (a record added, acknowledged, dead or
-- requeued) in the feed: record ids scored by the sequence number of their last move. The
-- feed's epoch names this run of it: another epoch means Redis lost the feed (restarted
-- empty), and a follower reads everything held again (outbox_changes.lua).
-- feed_indexed: the feed's last move whose record is indexed by customer. This version
-- indexes what it writes, so it keeps the mark at the feed's end; a version before the
-- index does not, and the gap it leaves is indexed when a customer is next read
-- (outbox_catch_up.lua).
local counted, feed, feed_seq, feed_epoch = KEYS[22], KEYS[23], KEYS[24], KEYS[28]
local feed_indexed = KEYS[31]
local function moved(id)
  if redis.call('EXISTS', feed_epoch) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', feed_epoch, now[1] .. '.' .. now[2])
  end
  local last = redis.call('GET', feed_seq)
  local seq = next_of(feed_seq)
  redis.call('ZADD', feed, seq, id)
  if not last or redis.call('GET', feed_indexed) == last then
    redis.call('SET', feed_indexed, seq)
  end
end

-- Every record by customer: members "customer\nid" (score 0), so one customer's records
-- are one lexicographic range.
local customers, schema = KEYS[25], KEYS[26]  -- schema "2": every record is indexed
local scoped = KEYS[27]  -- "1": every key is scoped to its customer (outbox_scope.lua)
local function customer_of(id)
  local payload = redis.call('HGET', pay, id)
  if not payload then return nil end
  local ok, body = pcall(cjson.decode, payload)
  if ok and type(body) == 'table' and type(body.customerId) == 'string' then
    return body.customerId
  end
  return nil
end

-- Frees the idempotency key, unless a newer record holds it.
local function free_key(id)
  local identity = redis.call('HGET', ident, id)
  if identity and redis.call('HGET', idx, identity) == id then
    redis.call('HDEL', idx, identity)
  end
end

-- Drops the record entirely.
local function forget(id)
  local customer = customer_of(id)
  if customer then redis.call('ZREM', customers, customer .. '\n' .. id) end
  free_key(id)
  redis.call('HDEL', rec, id)
  redis.call('HDEL', pay, id)
  redis.call('HDEL', ident, id)
  redis.call('HDEL', att, id)
  redis.call('HDEL', counted, id)
  redis.call('ZREM', feed, id)
end

-- Back in its lane's ready queue, in the place its own time gives it.
local function make_ready(lane, id)
  redis.call('ZADD', lane.ready, redis.call('ZSCORE', pending, id) or '0', id)
end

-- SET usage replaces a value: the newest enqueued per customer, feature and resource (its
-- time, in latest_set), and the SET being sent for each (its id, in set_sending). An older
-- SET is never sent once a newer one is enqueued, nor a newer one while an older is sent:
-- Stigg would end at the older value.
local latest_set, set_sending = KEYS[29], KEYS[30]
local function set_scope(payload)
  local ok, body = pcall(cjson.decode, payload or '')
  if not ok or type(body) ~= 'table' or body.updateBehavior ~= 'SET' then return nil end
  local resource = body.resourceId
  if type(resource) ~= 'string' then resource = '' end
  return tostring(body.customerId) .. '\n' .. tostring(body.featureId) .. '\n' .. resource
end

-- The Stigg environment (a digest of base URL and API key) whose usage the outbox holds:
-- set by the first to enqueue or claim. Usage of another environment is never taken in,
-- nor handed to its sender (it would go out with the wrong key). "": not known, not checked.
local environment = KEYS[32]
local function refuse_foreign(token)
  if token == nil or token == '' then return nil end
  local holder = redis.call('GET', environment)
  if not holder then
    redis.call('SET', environment, token)
  elseif holder ~= token then
    return redis.error_reply('STIGG_CACHE_FOREIGN_ENVIRONMENT')
  end
  return nil
end

-- Shared by every outbox script. KEYS, in this order (all under one hash tag):
local seq, rec, pay, ident, idx, att = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local pending, sent, dead, dinfo, owners = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
-- Per kind: ready (score = id, so oldest first), delayed (score = retry time),
-- leased (score = lease end), and when each delay and lease was set: a time set
-- "in the future" means the wall clock has since stepped back, and the record
-- is sendable again rather than stranded until the clock catches up.
local lanes = {
  event = {ready = KEYS[12], delayed = KEYS[13], leased = KEYS[14],
           delayed_since = KEYS[18], leased_since = KEYS[19]},
  usage = {ready = KEYS[15], delayed = KEYS[16], leased = KEYS[17],
           delayed_since = KEYS[20], leased_since = KEYS[21]},
}

-- "event\nkey" -> "event"
local function kind_of(id)
  local identity = redis.call('HGET', ident, id)
  if not identity then return nil end
  return string.match(identity, '^(%a+)\n')
end

-- Out of every queue of its lane (still held as a record).
local function unqueue(id, kind)
  local lane = lanes[kind]
  redis.call('ZREM', lane.ready, id)
  redis.call('ZREM', lane.delayed, id)
  redis.call('ZREM', lane.leased, id)
  redis.call('ZREM', lane.delayed_since, id)
  redis.call('ZREM', lane.leased_since, id)
  redis.call('HDEL', owners, id)
end

-- Every process follows what moves local usage (a record added, acknowledged, dead or
-- requeued) in the feed: record ids scored by the sequence number of their last move.
local counted, feed, feed_seq = KEYS[22], KEYS[23], KEYS[24]
local function moved(id)
  redis.call('ZADD', feed, redis.call('INCR', feed_seq), id)
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
  free_key(id)
  redis.call('HDEL', rec, id)
  redis.call('HDEL', pay, id)
  redis.call('HDEL', ident, id)
  redis.call('HDEL', att, id)
  redis.call('HDEL', counted, id)
  redis.call('ZREM', feed, id)
end


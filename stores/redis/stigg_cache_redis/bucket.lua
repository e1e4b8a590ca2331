-- A token bucket the fleet shares, on Redis's clock (hosts' clocks may differ).
-- KEYS[1]: the bucket, KEYS[2]: the processes taking from the fleet's buckets (member: the
-- process, score: when last seen). ARGV: operation, rate, capacity, count, least, process,
-- seen_s. Returns the result as a string (Lua numbers would come back as integers) and how
-- many processes took from a bucket in the last seen_s: what each paces at, alone, once
-- Redis is unreachable, is the account's rate over that many.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, capacity = tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
if now > updated then
  tokens = math.min(capacity, tokens + (now - updated) * rate)
  updated = now
end
local operation, count = ARGV[1], tonumber(ARGV[4] or '0')
local result = 0
if operation == 'available' then
  result = tokens
elseif operation == 'acquire' then
  result = math.min(count, math.floor(tokens))
  if result < math.max(tonumber(ARGV[5]), 1) then result = 0 end
  tokens = tokens - result
elseif operation == 'take' then
  if count <= tokens then tokens = tokens - count else result = (count - tokens) / rate end
elseif operation == 'refund' then
  tokens = math.min(capacity, tokens + count)
elseif operation == 'pause' then
  tokens = math.min(tokens, -count * rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'updated', string.format('%.6f', updated))
redis.call('EXPIRE', KEYS[1], 3600)
local seen_s = tonumber(ARGV[7])
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - seen_s)
redis.call('EXPIRE', KEYS[2], math.ceil(seen_s))
return {string.format('%.6f', result), redis.call('ZCARD', KEYS[2])}

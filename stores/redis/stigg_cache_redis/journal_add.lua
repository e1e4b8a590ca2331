-- The host's journal of offline decisions: count kinds in, within a bound (atomic).
-- KEYS[1]: hash kind key -> "count first last chars"; KEYS[2]: hash chars, uncovered.
-- ARGV: size, chars, uncovered, then (key, count, first, last, chars) per kind.
local size, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local uncovered = tonumber(ARGV[3])
local kinds = redis.call('HLEN', KEYS[1])
local used = tonumber(redis.call('HGET', KEYS[2], 'chars') or '0')
for i = 4, #ARGV, 5 do
  local key, count = ARGV[i], tonumber(ARGV[i + 1])
  local first, last, chars = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local held = redis.call('HGET', KEYS[1], key)
  if held then
    local n, f, l, c = string.match(held, '^(%S+) (%S+) (%S+) (%S+)$')
    redis.call('HSET', KEYS[1], key, string.format('%d %.17g %.17g %d',
      tonumber(n) + count, math.min(tonumber(f), first), math.max(tonumber(l), last), tonumber(c)))
  elseif kinds < size and used + chars <= limit then
    redis.call('HSET', KEYS[1], key, string.format('%d %.17g %.17g %d', count, first, last, chars))
    kinds, used = kinds + 1, used + chars
  else
    uncovered = uncovered + count
  end
end
redis.call('HSET', KEYS[2], 'chars', used)
if uncovered > 0 then
  redis.call('HINCRBY', KEYS[2], 'uncovered', uncovered)
end
return kinds

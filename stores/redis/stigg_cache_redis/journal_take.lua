-- The host's journal of offline decisions, taken whole: read and emptied atomically, so
-- two processes reconciling at once never both report one decision.
-- KEYS[1]: the kinds hash; KEYS[2]: the meta hash. Returns {uncovered, key, value, ...}.
local taken = redis.call('HGETALL', KEYS[1])
local uncovered = redis.call('HGET', KEYS[2], 'uncovered') or '0'
redis.call('DEL', KEYS[1], KEYS[2])
table.insert(taken, 1, uncovered)
return taken

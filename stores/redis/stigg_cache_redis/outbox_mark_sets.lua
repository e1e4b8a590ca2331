-- ARGV: pairs of a SET's scope (customer, feature, resource) and its time, for SETs a host
-- sent from its local outbox while Redis did not answer. Each becomes the newest of its
-- scope unless a newer one is known: an older SET moved here later is then superseded.
for at = 1, #ARGV, 2 do
  local scope, stamped = ARGV[at], ARGV[at + 1]
  local latest = redis.call('HGET', latest_set, scope)
  if not (latest and tonumber(latest) >= tonumber(stamped)) then
    redis.call('HSET', latest_set, scope, stamped)
  end
end
return #ARGV / 2

-- ARGV: owner. Gives back every lease the owner holds; returns how many.
local given = 0
local held = redis.call('HGETALL', owners)
for i = 1, #held, 2 do
  local id = held[i]
  if held[i + 1] == ARGV[1] then
    local kind = kind_of(id)
    if kind then
      unqueue(id, kind)
      make_ready(lanes[kind], id)
      given = given + 1
    end
  end
end
return given

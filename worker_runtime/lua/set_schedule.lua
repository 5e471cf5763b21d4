--[[
  Add, change or remove a schedule.

  KEYS[1] schedules (hash: name -> definition JSON)   KEYS[2] schedule_next (zset: name -> tick ms)
  ARGV[1] schedule name   ARGV[2] its definition (JSON), or "" to remove it
  ARGV[3] its first tick (ms), used when the schedule is new or its definition changed

  Returns 1 when something changed, 0 when the schedule was there already as given (its stored
  next tick is kept, so a worker restart re-declaring its app's schedules fires no tick twice and
  misses none).
  Invariant: a schedule has a definition and a next tick, or neither.
]]
local rcall = redis.call
local name, definition = ARGV[1], ARGV[2]
if definition == "" then
  rcall("ZREM", KEYS[2], name)
  return rcall("HDEL", KEYS[1], name)
end
if rcall("HGET", KEYS[1], name) == definition and rcall("ZSCORE", KEYS[2], name) then
  return 0
end
rcall("HSET", KEYS[1], name, definition)
rcall("ZADD", KEYS[2], ARGV[3], name)
return 1

--[[
  Record a running job's progress.

  KEYS[1] job hash
  ARGV[1] token   ARGV[2] progress (JSON)

  Returns 1, or -2 if the token is stale (the job is no longer this worker's).
]]
local rcall = redis.call
if rcall("HGET", KEYS[1], "token") ~= ARGV[1] then
  return -2
end
rcall("HSET", KEYS[1], "progress", ARGV[2])
return 1

--[[
  Delete up to N dead-lettered jobs, oldest first.

  KEYS[1] dead
  ARGV[1] job key prefix   ARGV[2] max jobs

  Returns the number deleted (call again until it returns 0).
]]
local rcall = redis.call
local ids = rcall("ZRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, job_id in ipairs(ids) do
  rcall("DEL", ARGV[1] .. job_id)
  rcall("ZREM", KEYS[1], job_id)
end
return #ids

--[[
  Delete dead-lettered jobs: the given ids, or else the oldest N that died by a given time.

  KEYS[1] dead
  ARGV[1] job key prefix   ARGV[2] max jobs   ARGV[3] time of death in ms up to which ("+inf": any)
  ARGV[4..] job ids: when given, only these (each only if it is in the dead-letter set)

  Returns the number of dead jobs deleted.
  Invariant: only a dead job is deleted. An id of the set with no dead job behind it (no hash, or
  a job in another state) leaves the set, and a live job it names is left as it is.
]]
local rcall = redis.call
local dead_key, prefix = KEYS[1], ARGV[1]
local ids
if #ARGV > 3 then
  ids = {unpack(ARGV, 4)}
else
  ids = rcall("ZRANGEBYSCORE", dead_key, "-inf", ARGV[3], "LIMIT", 0, tonumber(ARGV[2]))
end
local purged = 0
for _, job_id in ipairs(ids) do
  if rcall("ZREM", dead_key, job_id) == 1 then
    local state = rcall("HGET", prefix .. job_id, "state")
    if state == "dead" then
      rcall("DEL", prefix .. job_id)
      purged = purged + 1
    end
  end
end
return purged

--[[
  Extend the leases of the jobs a worker is running, and record the worker's heartbeat.

  KEYS[1] active   KEYS[2] workers   KEYS[3] isolation
  ARGV[1] lease ms   ARGV[2] job key prefix   ARGV[3] worker id   ARGV[4] heartbeat (JSON object)
  ARGV[5] "1" while the worker drains to run a suspect alone: its reservation is extended too
  ARGV[6..] pairs of job id, token

  Returns one integer per job: 1 extended, 0 lost (the job is gone or its token no longer holds
  the lease: it was recovered by another worker, so it must not be acknowledged by this one).
  Invariant: only the current lease holder can move a lease's expiry.
]]
--- @include "time"
--- @include "lease"
local rcall = redis.call
local active_key, workers_key = KEYS[1], KEYS[2]
local now = now_ms()
local expiry = int_str(now + tonumber(ARGV[1]))

local heartbeat = cjson.decode(ARGV[4])
heartbeat["seen_ms"] = now
rcall("HSET", workers_key, ARGV[3], cjson.encode(heartbeat))

if ARGV[5] == "1" and rcall("GET", KEYS[3]) == ARGV[3] then
  rcall("PEXPIRE", KEYS[3], ARGV[1])
end

local result = {}
for i = 6, #ARGV, 2 do
  local job_id, token = ARGV[i], ARGV[i + 1]
  if held_lease(ARGV[2] .. job_id, token) then
    rcall("ZADD", active_key, "XX", expiry, job_id)
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
return result

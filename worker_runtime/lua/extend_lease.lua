--[[
  Extend the leases of the jobs a worker is running, and record the worker's heartbeat.

  KEYS[1] active   KEYS[2] workers
  ARGV[1] lease ms   ARGV[2] job key prefix   ARGV[3] worker id   ARGV[4] heartbeat (JSON object)
  ARGV[5..] pairs of job id, token

  Returns one integer per job: 1 extended, 0 lost (the token no longer matches: the lease was
  recovered by another worker, so the job must not be acknowledged by this one).
  Invariant: only the current lease holder can move a lease's expiry.
]]
--- @include "time"
local rcall = redis.call
local active_key, workers_key = KEYS[1], KEYS[2]
local now = now_ms()
local expiry = int_str(now + tonumber(ARGV[1]))

local heartbeat = cjson.decode(ARGV[4])
heartbeat["seen_ms"] = now
rcall("HSET", workers_key, ARGV[3], cjson.encode(heartbeat))

local result = {}
for i = 5, #ARGV, 2 do
  local job_id, token = ARGV[i], ARGV[i + 1]
  if rcall("HGET", ARGV[2] .. job_id, "token") == token then
    rcall("ZADD", active_key, "XX", expiry, job_id)
    result[#result + 1] = 1
  else
    result[#result + 1] = 0
  end
end
return result

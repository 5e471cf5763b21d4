--[[
  Acknowledge a finished job and keep it for lookup within the retention limit.

  KEYS[1] job hash   KEYS[2] active   KEYS[3] completed   KEYS[4] counters
  ARGV[1] job id     ARGV[2] token    ARGV[3] result (JSON)
  ARGV[4] completed jobs to keep (-1 = all)   ARGV[5] job key prefix

  Returns 1 on success, -1 if the job does not exist, -2 if the token is stale (the lease was
  recovered by another worker, so this completion must not count).
  Invariant: a job leaves active and enters completed in one step, once per claim.
]]
--- @include "time"
--- @include "lease"
local rcall = redis.call
local job_key, active_key, completed_key, counters_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, token, keep = ARGV[1], ARGV[2], tonumber(ARGV[4])

local f, lease_error = held_lease(job_key, token)
if not f then
  return lease_error
end

local now = now_ms()
rcall("ZREM", active_key, job_id)
rcall("HSET", job_key, "state", "completed", "result", ARGV[3], "finished_at", int_str(now))
rcall("HDEL", job_key, "token")
rcall("ZADD", completed_key, int_str(now), job_id)
rcall("HINCRBY", counters_key, "completed", 1)

if keep >= 0 then
  local excess = rcall("ZCARD", completed_key) - keep
  if excess > 0 then
    local old = rcall("ZRANGE", completed_key, 0, excess - 1)
    for i = 1, #old do
      rcall("DEL", ARGV[5] .. old[i])
    end
    rcall("ZREMRANGEBYRANK", completed_key, 0, excess - 1)
  end
end
return 1

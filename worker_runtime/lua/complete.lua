--[[
  Acknowledge a finished job and keep it for lookup within the retention limits.

  KEYS[1] job hash   KEYS[2] active   KEYS[3] completed   KEYS[4] counters
  KEYS[5] flow       KEYS[6] unhold      KEYS[7] breakers   KEYS[8] breaker_fails
  KEYS[9] breaker_window
  ARGV[1] job id     ARGV[2] token    ARGV[3] result (JSON)
  ARGV[4] completed jobs to keep (-1 = all)   ARGV[5] job key prefix
  ARGV[6] ms a completed job is kept (older ones are deleted)

  Returns 1 on success, -1 if the job does not exist, -2 if the token is stale (the lease was
  recovered by another worker, so this completion must not count).
  Invariant: a job leaves active and enters completed in one step, once per claim; the
  completed set is trimmed in the same step, by at most RETAIN_BUDGET jobs (include "retain").
  Under a running cap (flow.max_running) the end of a job wakes one worker the cap held; with
  circuit breakers (flow.breaker_failures) it ends its name's run of failures, counts in its
  window (a failure ratio configured), and closes its half-open breaker (include "breaker").
]]
--- @include "time"
--- @include "lease"
--- @include "retain"
--- @include "breaker"
local rcall = redis.call
local job_key, active_key, completed_key, counters_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, token, keep = ARGV[1], ARGV[2], tonumber(ARGV[4])

local f, lease_error = held_lease(job_key, token, "name")
if not f then
  return lease_error
end

local now = now_ms()
rcall("ZREM", active_key, job_id)
rcall("HSET", job_key, "state", "completed", "result", ARGV[3], "finished_at", int_str(now))
rcall("HDEL", job_key, "token")
rcall("ZADD", completed_key, int_str(now), job_id)
rcall("HINCRBY", counters_key, "completed", 1)
retain(completed_key, keep, ARGV[5], tonumber(ARGV[6]), now)
local flow = rcall("HMGET", KEYS[5], "max_running", "breaker_failures", "breaker_ratio", "breaker_window_ms",
  "breaker_min_attempts")
if flow[1] then
  rcall("ZADD", KEYS[6], 0, "0")
end
if flow[2] and f[3] then
  breaker_succeeded(KEYS[7], KEYS[8], KEYS[9], f[3], breaker_ratio(flow[3], flow[4], flow[5]), now)
end
return 1
